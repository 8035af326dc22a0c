"""The language-interpolation project's training lines, typed in its words, start near uniform guessing (issue 13
point 1)."""

from __future__ import annotations

import json
import math

import pytest

from allmlp.configure import build_config
from allmlp.engine import run
from allmlp.models.highorder.reference_lines import REFERENCE_LINES
from conftest import TINY_BUDGET

TEXT = ("When shall we three meet again, in thunder, lightning, or in rain? When the hurlyburly's done, when the "
        "battle's lost and won. That will be ere the set of sun. Where the place? Upon the heath. There to meet "
        "with Macbeth. Fair is foul, and foul is fair: hover through the fog and filthy air.\n") * 6


@pytest.mark.parametrize("line", REFERENCE_LINES, ids=[line.name for line in REFERENCE_LINES])
def test_reference_line_first_logged_loss_is_within_twice_uniform_guessing(line, tmp_path):
    corpus = tmp_path / "book.txt"
    corpus.write_text(TEXT)
    tiny = ["data.name=text", f"data.path={corpus}", "data.max_chars=0", *TINY_BUDGET]
    cfg = build_config(line.preset, [*line.words.split(), *tiny])  # its words, then the tiny budget
    built = []
    run(cfg, tmp_path / "run", prepare=lambda exp, *_: built.append(exp))
    exp = built[0]
    records = [json.loads(row) for row in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    first_loss = next(r["loss"] for r in records if r.get("split") == "train")
    vocab_size = exp.tokenizer.vocab_size
    assert math.isfinite(first_loss) and first_loss <= 2 * math.log(vocab_size), (line.name, first_loss)


def test_perplexity_overflow_is_reported_as_infinite_not_capped():
    from allmlp.tasks.language import loss_metrics

    assert loss_metrics("val", 2.0)["val/ppl"] == pytest.approx(math.exp(2.0))
    assert loss_metrics("val", 589.0)["val/ppl"] > 1e255  # was silently capped at exp(50) = 5.2e21
    assert loss_metrics("val", 800.0)["val/ppl"] == math.inf  # past float range: inf, not a made-up number
