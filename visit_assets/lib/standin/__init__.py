"""A stand-in model: a TEST INSTRUMENT that imitates a competent LLM behind an OpenAI-compatible
server, so the whole generation path can be rehearsed offline, with faults planted on purpose.

It is never a default backend and its model name says what it is (`STAND_IN_MODEL`); the openai
backend records its output with weights `stand-in`, which counts as not real everywhere
(visit_assets/lib/models/identity.py), so nothing it writes can pass for real data.

    recognise.py  which of the product's prompts a request is (read from the prompt files)
    scene.py      the facts / description a prompt carries, parsed into a small scene model
    replies.py    competent, grounded replies per prompt role
    vision.py     the images a request carries, decoded and described from their pixels
    faults.py     planted faults: which request gets which, deterministically
    server.py     the HTTP server: replies, faults, serving-speed emulation, the fault log
    scoring.py    the log against the product's outputs: precision and recall per filter
"""

STAND_IN_MODEL = "visit-stand-in-NOT-A-MODEL"
ROLE_MODELS = ("checker", "judge", "pairwise", "teacher", "describer")  # the product's roles besides the generator


def role_model(role: str) -> str:
    """The stand-in's name when it plays one role of several (`.../judge`), so a rehearsal can
    show that each role's requests reach that role's model."""
    return f"{STAND_IN_MODEL}/{role}"


def is_stand_in(served_model: str | None) -> bool:
    return served_model == STAND_IN_MODEL or str(served_model or "").startswith(f"{STAND_IN_MODEL}/")
