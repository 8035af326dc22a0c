"""One place that knows every named data set, image or text."""

from __future__ import annotations

import importlib
from pathlib import Path

from . import images


def _text_module():
    try:
        return importlib.import_module("allmlp.data.text")
    except ModuleNotFoundError:
        return None


def available() -> dict[str, str]:
    """Data set name -> short description."""
    out = {name: f"images {'x'.join(map(str, spec.shape))}, {len(spec.classes)} classes"
           for name, spec in images.DATASETS.items()}
    text = _text_module()
    if text is not None:
        out.update({name: f"text: {c.description}" for name, c in text.CORPORA.items()})
    return out


def fetch(name: str) -> Path:
    """Fetch data set `name` into the cache; returns where it is."""
    if name in images.DATASETS:
        return images.fetch(name)
    text = _text_module()
    if text is not None and name in text.CORPORA:
        return text.fetch_corpus(name)
    raise KeyError(f"unknown data set {name!r}; available: {', '.join(available())}")
