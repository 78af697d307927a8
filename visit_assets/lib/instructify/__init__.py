"""Instructify stages as pure logic: metadata to facts, the prompt registry, reply parsing, the
round-batched conversation sampling loop and the LLaVA export. No Dagster here (a test enforces it).

    facts = facts_for(record)                         # captions, layout, QA, OCR as numbered facts
    registry = load_registry()                        # visit_assets/prompts/instructify/*.yaml
    conversations, attempts = sample_conversations(records, registry, client.generate, SamplingConfig(), seed=0)
    manifest = write_export(to_llava(conversations), exports_root, export_summary(conversations))
"""
