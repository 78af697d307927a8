from visit_assets.lib.mminstruct.diversity import (
    diversity_report,
    lcs_length,
    length_plot,
    length_summary,
    root_verb,
    rouge_l,
    seeds_report,
    verb_object,
)


def test_lcs_and_rouge_l_by_hand():
    assert lcs_length("a b c d".split(), "a c d e".split()) == 3
    # candidate 4 tokens, reference 5, LCS 3: P = 3/4, R = 3/5, F = 2PR/(P+R) = 2/3
    assert abs(rouge_l("write a short poem", "write a poem about it") - 2 / 3) < 1e-9
    assert rouge_l("same words here", "same words here") == 1.0
    assert rouge_l("", "anything") == 0.0 and rouge_l("apple", "pear") == 0.0


def test_root_verbs_skip_politeness():
    assert root_verb("Please write a story about this scene.") == "write"
    assert root_verb("Describe the mood.") == "describe"
    assert root_verb("   ") is None


def test_report_counts_copies_of_seeds():
    seeds = ["Write a short story inspired by this image.", "Plan a day trip to the place shown."]
    report = diversity_report(["Write a short story inspired by this image.", "Compose a haiku about the light."], seeds)
    assert report["distinct_root_verbs"] == 2
    assert report["share_rouge_l_over_0_7"] == 0.5


def test_rouge_is_sampled_above_the_cap_and_says_over_how_many():
    seeds = ["Write a short story inspired by this image."]
    many = [f"Write a short story inspired by image {i}." for i in range(50)] + ["Count the birds."] * 50
    full = diversity_report(many, seeds)
    part = diversity_report(many, seeds, sample=20)
    assert full["rouge_l_over"] == 100 and part["rouge_l_over"] == 20 and part["instructions"] == 100
    assert part == diversity_report(many, seeds, sample=20)  # a seeded sample: the same every run
    assert full["distinct_root_verbs"] == part["distinct_root_verbs"] == 2


def test_length_summary_and_plot():
    texts = ["one two three", "one two", "one two three four five", ""]
    assert length_summary(texts) == {"n": 4, "mean": 2.5, "p10": 0, "p50": 3, "p90": 5, "max": 5}
    assert length_summary([]) == {"n": 0}
    assert length_plot({"generated": texts, "merged": ["a b"]}).startswith(b"\x89PNG")


def test_seeds_against_each_other_leave_themselves_out():
    seeds = ["Write a short story inspired by this image.", "Write a short story inspired by this photo.",
             "Plan a day trip to the place shown."]
    r = seeds_report(seeds)
    assert r["instructions"] == 3 and r["mean_rouge_l_to_nearest_seed"] < 1.0  # against itself it would be 1.0
    assert r["share_rouge_l_over_0_7"] == round(2 / 3, 4)  # the two near-copies find each other


def test_verb_object_is_the_verb_and_the_head_of_the_phrase_after_it():
    assert verb_object("Please write a short story inspired by this image.") == ("write", "story")
    assert verb_object("Describe the image in detail.") == ("describe", "image")
    assert verb_object("Tell me a joke about the cat.") == ("tell", "joke")  # the pronoun is not the object
    assert verb_object("Give a detailed description of the scene.") == ("give", "description")
    assert verb_object("Explain why the man is smiling.") == ("explain", None)  # a clause, not an object
    assert verb_object("Summarize.") == ("summarize", None) and verb_object(" ") == (None, None)
    report = diversity_report(["Write a poem about the sea.", "Write a poem on love.", "Describe the image."], [])
    assert report["top_verb_objects"] == [("write poem", 2), ("describe image", 1)]
    assert report["distinct_verb_objects"] == 2 and "no dependency parser" in report["verb_object_method"]
