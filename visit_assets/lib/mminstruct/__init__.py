"""MM-Instruct stages as pure logic (no Dagster): seeds -> generated instructions -> k-means +
LLM merge -> image/instruction matching -> answers -> filters -> LLaVA turns. See docs/mminstruct.md.

    seeds = load_seeds()
    jobs = instruction_requests(descriptions, seeds, seed=0)           # generate.py
    rows = [instruction_row(j, r, seeds_by_id(seeds)) for j, r in zip(jobs, client.generate([j.request for j in jobs]))]
    groups = dedupe_exact([r["instruction"] for r in rows if r["instruction"]])
    labels, info = cluster_instructions(embedder.encode([g.text for g in groups]), k=300, seed=0)   # cluster.py
    merges = merge_requests(group_clusters(ids, texts, vecs, labels))
    matches = match_images(image_ids, similarity(img_vecs, ins_vecs), ins_ids, matcher="clip-image", seed=0)  # match.py
    answers = answer_requests(items, load_answer_examples(), seed=0)   # answer.py
    reason = check_answer(text, finish_reason); turns = to_llava_turns(instruction, answer)      # filters.py
"""
