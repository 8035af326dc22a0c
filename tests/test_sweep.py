"""`allmlp sweep`: search-space parsing and a 3-trial optuna sweep on a tiny text."""

from __future__ import annotations

import csv
import json

import pytest

from allmlp.checkpoint import load_run
from allmlp.cli import main
from allmlp.configure import build_config
from allmlp.sweep import parse_spec, share

pytest.importorskip("optuna")


def test_parse_spec_ranges_choices_and_fixed_values():
    space, fixed = parse_spec(["optim.lr=1e-4:1e-2:log", "net.hidden.width=8:64", "net.n=2,3,4",
                               "optim.name=adam", "data.path=/tmp/a:b.txt"])
    lr, width, n = space
    assert (lr.low, lr.high, lr.log, lr.integer) == (1e-4, 1e-2, True, False)
    assert (width.low, width.high, width.integer) == (8, 64, True)
    assert n.choices == [2, 3, 4]
    assert fixed == ["optim.name=adam", "data.path=/tmp/a:b.txt"]
    for bad in (["optim.lr=1e-2:1e-4"], ["optim.lr=0:1:log"], ["optim.lr=1:2:lin"], ["optim.name=adam"]):
        with pytest.raises(ValueError, match="sweep"):
            parse_spec(bad)
    assert share(7, 3) == [3, 2, 2]


def test_three_trial_sweep_on_tiny_text(tmp_path, capsys):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("one two three four five six seven eight nine ten. " * 40)
    out_dir = tmp_path / "runs"
    code = main(["sweep", "book_highorder", "--trials", "3", "--name", "tiny", "optim.lr=1e-3:3e-2:log",
                 "net.hidden.width=4,8", "net=small", "net.hidden.layers=1", "data.name=text", f"data.path={corpus}",
                 "data.max_chars=0", "data.context_length=4", "train.max_epochs=0", "train.max_steps=6",
                 "train.eval_interval=3", "batch_size=32", "data.eval_targets=256", f"train.out_dir={out_dir}"])
    assert code == 0
    sweep_dir = out_dir / "sweep_tiny"
    rows = list(csv.DictReader(open(sweep_dir / "results.csv")))
    assert len(rows) == 3 and {r["trial"] for r in rows} == {"0", "1", "2"}
    complete = [r for r in rows if r["state"] == "complete"]
    assert complete and all(float(r["val/loss"]) < 10 for r in complete)
    assert json.loads((sweep_dir / "results.json").read_text())[0]["trial"] == int(rows[0]["trial"])
    best = build_config(str(sweep_dir / "best.yaml"))
    assert best.model.name == "ho_small" and best.model.args["hidden_width"] == int(rows[0]["net.hidden.width"])
    model, cfg, tokenizer = load_run(sweep_dir / f"trial_{rows[0]['trial']}")  # every trial is a run folder
    assert cfg.optim.lr == pytest.approx(float(rows[0]["optim.lr"]))
    assert "sweep results" in capsys.readouterr().out


def test_sweep_with_a_wrong_key_fails_before_training(tmp_path, capsys):
    code = main(["sweep", "book_highorder", "--trials", "2", "optim.learning_rate=1e-3:1e-2",
                 f"train.out_dir={tmp_path}"])
    assert code == 2
    assert "learning_rate" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
