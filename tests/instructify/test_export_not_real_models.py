"""The export manifest names every model on the exported rows whose weights are not real."""

from visit_assets.lib.instructify.export import export_summary, not_real_models
from visit_assets.lib.models import identity
from visit_assets.lib.models.identity import ModelIdentity

REAL = ModelIdentity("SmolLM2-135M-Instruct.Q4_1.gguf", "a" * 64, "llm")


def _row(**over):
    return {"conversation_id": "c", "image_key": "x.jpg", "recipe": "instructify", "turns": [], **over}


def test_every_not_real_marker_is_reported_and_real_weights_are_not():
    for marker in identity.NOT_REAL:  # the stand-in included: one list, read here
        fake = ModelIdentity("some-model", marker, "llm")
        assert not_real_models([_row(model=fake.label()), _row(model=REAL.label())]) == [fake.label()]
    assert identity.STAND_IN in identity.NOT_REAL
    assert not_real_models([_row(model=REAL.label(), verifier_models=[REAL.label()])]) == []


def test_verifiers_scorers_and_llm_columns_count_too():
    echo = ModelIdentity("echo", identity.NO_MODEL, "llm")
    clip = ModelIdentity("open_clip:ViT-B-32", identity.RANDOM_INIT, "clip")
    rows = [_row(model=REAL.label(), verifier_models=[echo.label()],
                 clip_model=f"{clip.label()} (random weights: not scored)", judge_model="gpt-4",
                 llm_model="standin", llm_weights=identity.STAND_IN),
            _row(recipe="imported", model=None, judge_model="unnamed model (imported from x.json)")]
    assert not_real_models(rows) == sorted([echo.label(), clip.label(), "standin@stand-in"])


def test_the_summary_carries_the_field():
    echo = ModelIdentity("echo", identity.NO_MODEL, "llm")
    assert export_summary([_row(model=echo.label())])["not_real_models"] == ["echo@no-model"]
    assert export_summary([])["not_real_models"] == []
