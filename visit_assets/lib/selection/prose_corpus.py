"""Real prose for measuring clustering on realistic embeddings: the sentences of installed docstrings.

Gaussian mixtures are easy for every clustering method; sentences written by people are not.
Docstrings of the standard library (and, for the benchmark, of site-packages) are on every machine,
so the corpus needs no download and nothing is copied into the repository: only counts and hashes
of it are recorded.
"""

from __future__ import annotations

import ast
import re
import sysconfig
from pathlib import Path

import numpy as np

SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
MIN_WORDS, MAX_WORDS = 8, 40
MARKUP = "`=_()[]{}<>*:|\\"


def prose_sentences(with_site_packages: bool = True) -> list[str]:
    """Distinct plain sentences of docstrings, in a fixed shuffle (seed 0), so any prefix is a mixed
    sample: site-packages and everything under the standard library's folder, or (False) the standard
    library alone, without its tests and installed packages (the same on every machine with this
    Python, and quicker to read)."""
    paths = sysconfig.get_paths()
    roots = ([Path(paths["purelib"])] if with_site_packages else []) + [Path(paths["stdlib"])]
    files = sorted(p for root in roots for p in root.rglob("*.py"))
    if not with_site_packages:
        files = [p for p in files if not {"site-packages", "test", "tests", "idlelib"} & set(p.parts)]
    seen: dict[str, None] = {}
    for path in files:
        for sentence in _file_sentences(path):
            seen.setdefault(sentence, None)
    sentences = sorted(seen)
    order = np.random.default_rng(0).permutation(len(sentences))
    return [sentences[i] for i in order]


def _file_sentences(path: Path) -> list[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except (SyntaxError, ValueError, OSError):
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            doc = ast.get_docstring(node)
            out += _prose(doc) if doc else []
    return out


def _prose(doc: str) -> list[str]:
    """The plain sentences of a docstring: no code, markup, parameter lists or examples."""
    text = " ".join(" ".join(p.split()) for p in doc.split("\n\n")
                    if not p.lstrip().startswith((">>>", "..", "-", "*", ":")))
    out = []
    for sentence in SENTENCE_END.split(text):
        words = sentence.split()
        if not MIN_WORDS <= len(words) <= MAX_WORDS or not sentence.endswith("."):
            continue
        if sum(w.isalpha() for w in words) < 0.8 * len(words) or any(c in sentence for c in MARKUP):
            continue
        out.append(sentence)
    return out
