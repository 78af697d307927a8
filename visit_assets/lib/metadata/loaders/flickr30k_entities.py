"""Flickr30k Entities loader (format `flickr30k_entities`): one image's Sentences file, read with its
Annotations file.

The release (annotations.zip of the flickr30k_entities repository) unpacks to two folders with one
file per Flickr30k image:

    Sentences/<image id>.txt     one caption a line (five per image), its phrases marked up as
                                 `[/EN#<chain id>/<type 1>/.../<type n> <word 1> ... <word n>]`
    Annotations/<image id>.xml   PASCAL VOC-like: <annotation><size><width/><height/><depth/></size>
                                 <object><name>chain id</name>... then either <bndbox><xmin/><ymin/>
                                 <xmax/><ymax/></bndbox> or <nobndbox>1</nobndbox> / <scene>1</scene>
                                 </object>...</annotation>

(the repository's README and its flickr30k_entities_utils.py say so: an object has one or more
<name> chain ids; chain id 0 is "notvisual", never annotated; the parser there takes the corners as
1-based and subtracts 1). Not confirmed: whether <filename> is always present (it is not used).

The Sentences file is the source; Annotations/<same id>.xml (the sibling folder) its companion. A
full release is 31,783 sources; the repository's train.txt / val.txt / test.txt split lists are
not read. A dataset folder scan takes `.txt` files in a folder named `Sentences` only (the
loader's `scans`), so other text files are not sources; name a renamed folder's files in
dataset.yaml. Rows (see ..records):
  * one "image" row, `<source>#image/<image id>`: image_key `flickr30k-images/<image id>.jpg` (the
    official image archive's folder, as localized_narratives names Flickr30k images), width/height
    from the XML's <size>;
  * one "caption" row per non-empty line, `<source>#caption/<n>` (n counts the non-empty lines from
    0): the sentence with the markup removed (the phrases' words kept);
  * one "box" row per XML object with a <bndbox> and per distinct phrase naming one of its chain
    ids, `<source>#box/<object index>/<m>`: label = the phrase (whitespace collapsed, first letter
    lower-cased unless an acronym, final period dropped: visual_genome's region labels), pixel box
    x = xmin - 1, y = ymin - 1, w = xmax - xmin, h = ymax - ymin (the toolkit's 0-based corners);
    a phrase of more than 12 words is rejected `text_too_long`. Distinct: "a man" in two captions
    labels the box once. An object no phrase names is one row `<source>#box/<object index>`
    (invalid_record). Objects without a box (<nobndbox> / <scene> flags) hold no region and give
    no row.
So rows == 1 + non-empty lines + (per boxed object: its distinct phrases, at least 1).

Rejects: a line whose markup does not parse (a "[" or "]" left over) is invalid_record, its phrases
unused; a <bndbox> without four integer corners is invalid_record, one with xmax <= xmin or
ymax <= ymin box_out_of_bounds. An absent XML file is one row `<source>#box/file`
(missing_companion: the captions stand without it, the boxes are lost); an unreadable one, or one
with a DTD (refused: entity expansion), is that row as malformed_file. A Sentences file that is
empty or not UTF-8 is one `<source>#file` row (malformed_file).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import polars as pl

from ..records import BOX, CAPTION, IMAGE, INVALID, to_source_records
from .common import BadFile, as_size, file_reject, image_key_or_reject, phrase_label, phrase_too_long
from .registry import NO, SIGNATURE, Loader

FORMAT = "flickr30k_entities"
_DETAIL_MAX = 300
_PHRASE = re.compile(r"\[/EN#(?P<chain>\d+)(?P<types>(?:/[^\s/\[\]]+)+)\s+(?P<words>[^\[\]]*?)\]")
_MARKUP = re.compile(rb"\[/EN#\d+/")


def annotations_path(sentences: Path) -> Path:
    return sentences.parent.parent / "Annotations" / f"{sentences.stem}.xml"


def companions(path: Path) -> list[Path]:
    return [annotations_path(Path(path))]


def in_sentences_folder(path: Path) -> bool:
    """What a dataset folder scan takes of the .txt files: those in a `Sentences` folder."""
    return path.parent.name == "Sentences"


def detect(path: Path, head: bytes) -> int:
    """2 for a .txt file carrying the `[/EN#<chain id>/` phrase markup, else 0."""
    return SIGNATURE if path.suffix == ".txt" and _MARKUP.search(head) else NO


def parse_line(line: str) -> tuple[str, list[tuple[str, str]]] | None:
    """(the plain sentence, [(chain id, phrase)]) of one marked-up caption; None when the markup
    does not parse."""
    phrases: list[tuple[str, str]] = []

    def plain(m: re.Match) -> str:
        words = " ".join(m["words"].split())
        phrases.append((m["chain"], words))
        return words

    text = " ".join(_PHRASE.sub(plain, line).split())
    if "[" in text or "]" in text or any(not words for _, words in phrases):
        return None
    return text, phrases


def _read_xml(path: Path) -> ET.Element:
    data = path.read_bytes()
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise BadFile("malformed_file", "the XML has a DTD, which is refused")
    try:
        return ET.fromstring(data)
    except ET.ParseError as e:
        raise BadFile("malformed_file", f"invalid XML: {e}") from None


def _int_text(el: ET.Element | None, tag: str) -> int | None:
    child = el.find(tag) if el is not None else None
    text = (child.text or "").strip() if child is not None else ""
    return int(text) if re.fullmatch(r"-?\d+", text) else None


def load_flickr30k_entities(path: Path, source: str) -> pl.DataFrame:
    """A Sentences/<id>.txt file (+ Annotations/<id>.xml) -> source records (module docstring).
    Bad data never raises; only an unreadable path (OSError) does."""
    path = Path(path)
    base = {"source": source, "source_format": FORMAT}
    data = path.read_bytes()
    if not data.strip():
        return to_source_records([file_reject(source, FORMAT, BadFile("malformed_file", "the file is empty"))])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return to_source_records([file_reject(source, FORMAT, BadFile("malformed_file", f"not UTF-8: {e}"))])

    image_id = path.stem
    xml_path = annotations_path(path)
    root, xml_problem = None, None
    if not xml_path.is_file():
        xml_problem = ("missing_companion", f"Annotations/{xml_path.name} not found: no boxes")
    else:
        try:
            root = _read_xml(xml_path)
        except BadFile as e:
            xml_problem = (e.reason, f"Annotations/{xml_path.name}: {e.detail}")
    size = root.find("size") if root is not None else None
    image = image_key_or_reject(f"flickr30k-images/{image_id}.jpg", {
        **base, "record_id": f"{source}#image/{image_id}", "kind": IMAGE,
        "width": as_size(_int_text(size, "width")), "height": as_size(_int_text(size, "height"))})
    key = image["image_key"]
    rows = [image]

    chains: dict[str, list[str]] = {}  # chain id -> distinct phrase labels, first seen first
    lines = [line for line in text.splitlines() if line.strip()]
    for n, line in enumerate(lines):
        row = {**base, "record_id": f"{source}#caption/{n}", "kind": CAPTION, "image_key": key}
        parsed = parse_line(line)
        if parsed is None:
            row.update(text=" ".join(line.split()), reject_reason="invalid_record",
                       reject_detail="the phrase markup does not parse")
        else:
            row["text"] = parsed[0]
            for chain, words in parsed[1]:
                labels = chains.setdefault(chain, [])
                if phrase_label(words) not in labels:
                    labels.append(phrase_label(words))
        rows.append(row)

    if xml_problem is not None:
        rows.append({**base, "record_id": f"{source}#box/file", "kind": INVALID, "image_key": key,
                     "reject_reason": xml_problem[0], "reject_detail": xml_problem[1]})
    for k, obj in enumerate(root.findall("object") if root is not None else []):
        bndbox = obj.find("bndbox")
        if bndbox is None:
            continue
        rows += _object_rows(base, f"{source}#box/{k}", key, obj, bndbox, chains)
    for r in rows:
        if r.get("reject_detail"):
            r["reject_detail"] = r["reject_detail"][:_DETAIL_MAX]
    return to_source_records(rows)


def _object_rows(base: dict, rid: str, key: str | None, obj: ET.Element, bndbox: ET.Element,
                 chains: dict[str, list[str]]) -> list[dict]:
    names = [(el.text or "").strip() for el in obj.findall("name")]
    labels = list(dict.fromkeys(label for name in names for label in chains.get(name, [])))
    corners = [_int_text(bndbox, t) for t in ("xmin", "ymin", "xmax", "ymax")]
    one = {**base, "record_id": rid, "kind": BOX, "image_key": key}
    xmin, ymin, xmax, ymax = corners
    if xmin is None or ymin is None or xmax is None or ymax is None:  # None in corners
        return [{**one, "reject_reason": "invalid_record",
                 "reject_detail": "bndbox needs integer xmin, ymin, xmax and ymax"}]
    box = {"bbox_x": float(xmin - 1), "bbox_y": float(ymin - 1), "bbox_w": float(xmax - xmin),
           "bbox_h": float(ymax - ymin), "bbox_norm": False}
    if not labels:
        return [{**one, **box, "reject_reason": "invalid_record",
                 "reject_detail": f"no phrase of the sentences names chain {', '.join(names) or '(none)'}"}]
    rows = []
    for m, label in enumerate(labels):
        row = {**one, **box, "record_id": f"{rid}/{m}", "label": label}
        if too_long := phrase_too_long(label):
            row["reject_reason"], row["reject_detail"] = "text_too_long", too_long
        elif xmax <= xmin or ymax <= ymin:
            row["reject_reason"], row["reject_detail"] = "box_out_of_bounds", f"bndbox {corners} has no area"
        rows.append(row)
    return rows


LOADER = Loader(FORMAT, load_flickr30k_entities, detect, companions,
                description="Flickr30k Entities Sentences/<id>.txt + Annotations/<id>.xml", suffixes=(".txt",),
                scans=in_sentences_folder)
