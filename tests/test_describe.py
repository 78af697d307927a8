from visit_assets.lib.metadata.describe import describe, describe_objects, fact_count, plural, position


def box(label, x1, y1, x2, y2):
    return {"label": label, "x1": x1, "y1": y1, "x2": x2, "y2": y2}


def test_coarse_positions():
    assert position(0.0, 0.0, 0.2, 0.2) == "top left"
    assert position(0.4, 0.4, 0.6, 0.6) == "centre"
    assert position(0.8, 0.7, 1.0, 1.0) == "bottom right"
    assert position(0.4, 0.0, 0.6, 0.1) == "top"


def test_counts_plurals_and_many():
    lines = describe_objects([box("person", 0, 0, .2, .9), box("person", .7, .1, .9, .9), box("cup", .45, .45, .5, .5)])
    assert lines == ["2 people: left (medium), right (medium)", "1 cup: centre (small)"]
    many = describe_objects([box("coin", i / 10, 0, i / 10 + .05, .05) for i in range(9)])
    assert many == ["many coins (9) spread across the image"]
    assert plural("bus", 2) == "buses" and plural("dog", 1) == "dog"


def test_description_is_deterministic_and_complete():
    record = {"width": 640, "height": 480, "captions": ["A dog on grass."], "boxes": [box("dog", .1, .5, .4, .9)],
              "qa": [{"question": "What colour is the dog?", "answer": "Brown."}], "ocr": ["STOP"]}
    text = describe(record)
    assert text == describe(dict(record))
    for piece in ("640x480", "A dog on grass.", "1 dog: bottom left", "What colour is the dog? Brown.", '"STOP"'):
        assert piece in text
    assert fact_count(record) == 4
