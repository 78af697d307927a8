"""The stand-in's eyes: it decodes the images a request carries (OpenAI `image_url` parts holding
data URIs) and describes what the pixels show, as a vision-language model asked "Describe the image
in detail." would: format and size, the dominant colours by name, brightness and contrast, where
the bright, dark and colourful parts are, and simple shapes that stand out from the background.

Deterministic: the same image always gets the same words. It reads pixels, not content: it never
names objects, so everything it says is true of the image (a grounded description to build on).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_SIDE = 64  # the analysis runs on a thumbnail this big (the longer side)
POSITIONS = (("top left", "top", "top right"), ("left", "centre", "right"), ("bottom left", "bottom", "bottom right"))
NO_IMAGE_TEXT = ("I'm sorry, but I can't see an image in your message. Please attach the image you would like me to "
                 "describe.")
_DATA_URI = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[^;,]*)*?);base64,(?P<data>.*)", re.DOTALL)


class BadImage(ValueError):
    """An image part the server cannot load (what a real server answers with HTTP 400)."""


@dataclass(frozen=True)
class Look:
    """What the stand-in saw in one image."""

    width: int
    height: int
    digest: str  # of the encoded bytes
    description: str
    colours: tuple[str, ...]  # the dominant colour names, most first

    def entry(self) -> dict[str, Any]:
        return {"digest": self.digest, "width": self.width, "height": self.height, "colours": list(self.colours)}


def decode_data_uri(url: str) -> bytes:
    """The bytes of a base64 `data:` URI; BadImage for anything else (the stand-in fetches nothing)."""
    m = _DATA_URI.fullmatch(url.strip())
    if not m:
        scheme = url.split(":", 1)[0][:20] if ":" in url else "no scheme"
        raise BadImage(f"image_url must be a base64 data: URI (the stand-in fetches nothing), got {scheme!r}")
    try:
        data = base64.b64decode(m.group("data"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadImage(f"image_url data is not valid base64: {exc}") from exc
    if not data:
        raise BadImage("image_url data is empty")
    return data


def _load(data: bytes):
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise BadImage(f"cannot decode the image: {exc}") from exc
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))  # transparency shows as white, as servers convert
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def colour_names(rgb: np.ndarray) -> np.ndarray:
    """A colour name per pixel (rgb floats in [0, 1], shape (..., 3)), from hue, saturation and value."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(axis=-1)
    c = v - rgb.min(axis=-1)
    s = np.where(v > 0, c / np.maximum(v, 1e-9), 0.0)
    safe = np.maximum(c, 1e-9)
    h = np.where(v == r, ((g - b) / safe) % 6, np.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4)) * 60.0
    hue = np.select(
        [(h < 15) | (h >= 345), h < 45, h < 70, h < 165, h < 195, h < 260, h < 290],
        ["red", "orange", "yellow", "green", "cyan", "blue", "purple"], "pink")
    hue = np.where((hue == "orange") & (v < 0.6), "brown", hue)
    hue = np.where((hue == "red") & (s < 0.5) & (v > 0.7), "pink", hue)
    chromatic = np.where((v < 0.45) & (hue != "brown"), np.char.add("dark ", hue), hue)
    grey = np.select([v >= 0.85, v >= 0.55, v >= 0.3], ["white", "light grey", "grey"], "dark grey")
    return np.where(v < 0.15, "black", np.where((s < 0.18) | (c < 0.08), grey, chromatic))


def _brightness(mean: float) -> str:
    for limit, word in ((0.15, "very dark"), (0.35, "dark"), (0.6, "moderately bright"), (0.8, "bright")):
        if mean < limit:
            return word
    return "very bright"


def _where(ys: np.ndarray, xs: np.ndarray, h: int, w: int) -> str:
    row = min(2, int(3 * float(ys.mean() + 0.5) / h))
    col = min(2, int(3 * float(xs.mean() + 0.5) / w))
    return POSITIONS[row][col]


def _cell(a: np.ndarray, row: int, col: int) -> np.ndarray:
    h, w = a.shape[:2]
    return a[row * h // 3:(row + 1) * h // 3, col * w // 3:(col + 1) * w // 3]


def _shapes(names: np.ndarray, background: str) -> list[str]:
    """Compact areas of one colour that stand out from the background: rectangle, circle or triangle."""
    h, w = names.shape
    found = []
    counts = Counter(names.ravel().tolist())
    for name, n in counts.most_common():
        if name == background or not 0.005 * h * w <= n <= 0.4 * h * w or n < 4:
            continue
        ys, xs = np.nonzero(names == name)
        bh, bw = int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)
        spans = (ys.min() == 0 and ys.max() == h - 1) or (xs.min() == 0 and xs.max() == w - 1)
        if bh * bw > 0.6 * h * w or min(bh, bw) < 3 or spans:
            continue  # spread over the picture, a thin line or a band across it: not a shape
        fill = n / (bh * bw)
        ratio = bw / bh
        square = 0.85 <= ratio <= 1.18
        if fill >= 0.88:
            kind = "square" if square else "rectangle"
        elif fill >= 0.66:
            kind = "circle" if square else "oval"
        elif fill >= 0.4:
            kind = "triangular shape"
        else:
            continue
        area = bh * bw / (h * w)
        size = "small" if area < 0.05 else "medium-sized" if area < 0.2 else "large"
        found.append(f"a {size} {name} {kind} {_at(_where(ys, xs, h, w))}")
        if len(found) == 2:
            break
    return found


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _at(position: str) -> str:
    return "in the centre" if position == "centre" else f"at the {position}"


def _share(p: float) -> str:
    """A share as a person would round it: to 5% from 10% up, else to 1% (at least 1%)."""
    pct = round(p * 20) * 5 if p >= 0.1 else round(p * 100)
    return f"about {max(1, pct)}%"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def look(data: bytes) -> Look:
    """Describe one encoded image."""
    img = _load(data)
    width, height = img.size
    scale = MAX_SIDE / max(width, height)
    from PIL import Image

    small = img.resize((max(3, round(width * scale)), max(3, round(height * scale))), Image.Resampling.BOX)
    rgb = np.asarray(small, dtype=np.float64) / 255.0
    lum = rgb @ np.array([0.299, 0.587, 0.114])
    bri = (lum + rgb.max(axis=-1)) / 2  # brightness: luminance alone calls a vivid red dark; with the HSV value it does not
    names = colour_names(rgb)
    h, w = names.shape
    counts = Counter(names.ravel().tolist())
    total = h * w
    ranked = counts.most_common()
    main, main_n = ranked[0]
    others = [(n, c / total) for n, c in ranked[1:] if c / total >= 0.05][:3]

    if width > height * 1.1:
        shape = f"This is a landscape-format picture, wider than it is tall ({width} x {height} pixels)."
    elif height > width * 1.1:
        shape = f"This is a portrait-format picture, taller than it is wide ({width} x {height} pixels)."
    else:
        shape = f"This is a square picture ({width} x {height} pixels)."
    sentences = [shape]
    if main_n / total >= 0.9:
        sentences.append(f"It is almost entirely {main}.")
    elif main_n / total >= 0.5:
        rest = _join([f"{n} ({_share(p)})" for n, p in others]) if others else "small touches of other colours"
        sentences.append(f"{main.capitalize()} dominates it, covering {_share(main_n / total)} of the frame, with {rest}.")
    else:
        mix = _join([f"{n} ({_share(c / total)})" for n, c in ranked[:4] if c / total >= 0.05])
        sentences.append(f"Its colours are mixed: mostly {mix}.")

    flat = img.resize((min(width, 128), min(height, 128)), Image.Resampling.NEAREST).getcolors(maxcolors=24)
    texture = ("It is made of flat areas of colour with clean edges, more like a graphic or an illustration than a "
               "photograph." if flat is not None else "Its tones vary gradually, with the texture of a photograph.")
    mean, spread = float(bri.mean()), float(lum.std())
    contrast = "strong contrast" if spread > 0.25 else "moderate contrast" if spread > 0.1 else "little contrast"
    sentences.append(f"Overall the image is {_brightness(mean)}, with {contrast}. {texture}")

    shapes = _shapes(names, main)
    if shapes:
        sentences.append(f"Against the {main} background stands {_join(shapes)}.")

    rows = [Counter(names[r * h // 3:(r + 1) * h // 3].ravel().tolist()).most_common(1)[0][0] for r in (0, 2)]
    cols = [Counter(names[:, c * w // 3:(c + 1) * w // 3].ravel().tolist()).most_common(1)[0][0] for c in (0, 2)]
    if rows[0] != rows[1]:
        sentences.append(f"The upper part is mostly {rows[0]}, while the lower part is mostly {rows[1]}.")
    elif cols[0] != cols[1]:
        sentences.append(f"The left side is mostly {cols[0]}, while the right side is mostly {cols[1]}.")
    else:
        top, bottom = float(np.median(bri[: h // 3])), float(np.median(bri[h - h // 3:]))  # median: not a shape
        if abs(top - bottom) > 0.06:
            sentences.append("It is lighter at the top and darker towards the bottom." if top > bottom
                             else "It is darker at the top and lighter towards the bottom.")

    # the parts that stand out from the rest (against the typical ninth of the picture, so a uniform
    # picture has none)
    cells = [(r, c) for r in range(3) for c in range(3)]
    cell_lum = {rc: float(_cell(bri, *rc).mean()) for rc in cells}
    typical = float(np.median(list(cell_lum.values())))
    bright, dark = max(cells, key=lambda rc: (cell_lum[rc], -rc[0], -rc[1])), min(cells, key=lambda rc: (cell_lum[rc], rc))
    parts = []
    if cell_lum[bright] - typical > 0.1:
        parts.append(f"the brightest part is {_at(POSITIONS[bright[0]][bright[1]])}")
    if typical - cell_lum[dark] > 0.1:
        parts.append(f"the darkest part is {_at(POSITIONS[dark[0]][dark[1]])}")
    if parts:
        sentences.append(_sentence(" and ".join(parts)))
    sat = rgb.max(axis=-1) - rgb.min(axis=-1)
    cell_sat = {rc: float(_cell(sat, *rc).mean()) for rc in cells}
    vivid = max(cells, key=lambda rc: (cell_sat[rc], -rc[0], -rc[1]))
    if cell_sat[vivid] - float(np.median(list(cell_sat.values()))) > 0.2:
        sentences.append(f"The most colourful area is {_at(POSITIONS[vivid[0]][vivid[1]])}.")
    elif float(sat.mean()) < 0.08:
        sentences.append("There is almost no colour in it: it reads as black, white and grey.")

    colours = tuple([main] + [n for n, _ in others])
    return Look(width, height, hashlib.sha256(data).hexdigest()[:16], " ".join(sentences), colours)


def describe(urls: tuple[str, ...], entry: dict[str, Any]) -> str:
    """The reply to "Describe the image in detail." with these image URLs; BadImage for an image
    it cannot load. Without an image it says so, as a VLM served without one does (HTTP 200)."""
    if not urls:
        entry["truth"] = {"image": False}
        return NO_IMAGE_TEXT
    looks = [look(decode_data_uri(u)) for u in urls]
    entry["truth"] = {"image": True}
    entry["images"] = [lk.entry() for lk in looks]
    if len(looks) == 1:
        return looks[0].description
    return "\n\n".join(f"Image {i}: {lk.description}" for i, lk in enumerate(looks, start=1))
