"""InstructionGPT-4 data selection: quality scores, image clustering, per-cluster top-F selection,
and the pairwise judge used to evaluate the result. Pure logic: no Dagster."""
