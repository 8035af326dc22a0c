"""LightGBM next-char model: trained by `allmlp train`, saved as model.txt, reloaded and generating text."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from allmlp.checkpoint import load_run
from allmlp.cli import main

pytest.importorskip("lightgbm")


@pytest.fixture(scope="module")
def gbm_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("gbm")
    text = "to be or not to be, that is the question. " * 60
    corpus = tmp_path / "book.txt"
    corpus.write_text(text)
    run_dir = tmp_path / "gbm_run"
    code = main(["train", "book_gbm", "data.name=text", f"data.path={corpus}", "data.max_chars=0",
                 "model.context_length=4", "model.num_leaves=7", "model.min_data_in_leaf=2", "model.num_threads=1",
                 "model.rounds_per_step=2", "train.max_steps=8", "train.eval_interval=4", "train.progress=false",
                 "data.eval_batch_size=512", "--run-dir", str(run_dir)])
    assert code == 0
    return run_dir


def test_gbm_trains_saves_and_reloads_the_same_predictions(gbm_run, capsys):
    assert (gbm_run / "model.txt").is_file()
    records = [json.loads(line) for line in (gbm_run / "metrics.jsonl").read_text().splitlines()]
    val = [r["loss"] for r in records if r["split"] == "val"]
    assert val[-1] < val[0] < 3.0  # boosting lowers the held-out loss (uniform would be ln(16) = 2.77)
    model, cfg, tokenizer = load_run(gbm_run)
    assert model.lm_kind == "window" and model.context_length == 4
    assert model.booster.current_iteration() == 16  # 8 steps x 2 rounds
    x = torch.tensor([tokenizer.encode("to b"), tokenizer.encode("not ")])
    again, _, _ = load_run(gbm_run)
    assert torch.equal(model(x), again(x))
    assert tokenizer.decode(model(x).argmax(1).tolist()) == "et"  # "to be", "not to"
    capsys.readouterr()
    assert main(["generate", str(gbm_run), "--prompt", "to be or", "topk=1", "num_predict=12"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("to be or not to be")


def test_gbm_run_folder_without_booster_is_a_clear_error(gbm_run, tmp_path):
    copy = shutil.copytree(gbm_run, tmp_path / "copy")
    (copy / "model.txt").unlink()
    with pytest.raises(FileNotFoundError, match="model.txt"):
        load_run(copy)


def test_gbm_loss_is_minus_mean_log_probability_of_the_true_char(gbm_run):
    from allmlp.data.text import load_text_splits
    from allmlp.models.gbm import windows
    from allmlp.tasks import language

    model, cfg, tokenizer = load_run(gbm_run)
    _, streams = load_text_splits(cfg.data, tokenizer)
    x, y = windows(streams["val"], model.context_length)  # (N, T), (N,)
    probs = model.booster.predict(x).reshape(len(y), tokenizer.vocab_size)  # the booster's own probabilities
    assert abs(probs.sum(1) - 1).max() < 1e-6
    independent = -float(torch.log(torch.from_numpy(probs[range(len(y)), y])).mean())
    reported = language.evaluate_run(model, cfg, gbm_run)["val/loss"]
    assert reported == pytest.approx(independent, abs=1e-5)
    assert torch.allclose(model(torch.from_numpy(x[:50]).long()).exp().sum(1), torch.ones(50), atol=1e-5)
