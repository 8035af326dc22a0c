"""Guards on the numbers: held-out splits really are held out, every LM's loss is over a normalised distribution,
`stream_loss` scores exactly the targets it should, and the time budget and cosine schedule follow the clock."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from allmlp import engine
from allmlp.configure import build_config
from allmlp.data.batches import TensorBatches
from allmlp.data.text import CharTokenizer, TextBatches
from allmlp.engine import Experiment, lr_factor, run
from allmlp.models import create_model, list_models
from allmlp.tasks import build_experiment, language

QUIET = {"progress": False, "checkpoint_interval": 0, "log_interval": 1000}


def two_generator_corpus(path, cycles: int = 400) -> None:
    """Train part: the cycle a->b->c->d; val and test parts (last 10%): the reverse cycle a->d->c->b, same chars."""
    train, held_out = "abcd" * (cycles * 9 // 10), "adcb" * (cycles // 10)
    path.write_text(train + held_out)


@pytest.fixture(scope="module")
def trained_on_one_generator(tmp_path_factory):
    """A small Bengio MLP trained on the forward cycle; returns (experiment, config, training-stream batches)."""
    path = tmp_path_factory.mktemp("heldout") / "two_generators.txt"
    two_generator_corpus(path)
    cfg = build_config({"model": {"name": "bengio", "embedding_dim": 4, "hidden_dim": 16},
                        "data": {"name": "text", "path": str(path), "context_length": 3, "batch_size": 32,
                                 "train_fraction": 0.9, "val_fraction": 0.05, "eval_targets": 0},
                        "optim": {"lr": 1e-2, "warmup_steps": 0},
                        "train": {"max_steps": 150, "eval_interval": 0, **QUIET}})
    built = []
    run(cfg, tmp_path_factory.mktemp("run"), reuse=True, prepare=lambda exp, *_: built.append(exp))
    return built[0], cfg, built[0].train_batches


def test_val_and_test_losses_come_from_the_held_out_text(trained_on_one_generator):
    exp, cfg, train = trained_on_one_generator
    exp.model.eval()
    train_stream = language.stream_loss(exp.model, train)
    assert train_stream < 0.1  # the model learned the training cycle
    # Every held-out transition is one the training text never shows: an honest model is worse than uniform there,
    # while a val / test loss measured on the training stream would be as low as `train_stream`.
    end_of_run = exp.final_evaluate(exp.model)
    after_training = language.evaluate_run(exp.model, cfg, None)
    for metrics in (end_of_run, after_training):
        assert metrics["val/loss"] > math.log(4) and metrics["test/loss"] > math.log(4)


def test_training_evaluates_val_only_and_test_once_at_the_end(tmp_path):
    path = tmp_path / "two_generators.txt"
    two_generator_corpus(path, cycles=100)
    cfg = build_config({"model": {"name": "bengio", "embedding_dim": 4, "hidden_dim": 8},
                        "data": {"name": "text", "path": str(path), "context_length": 3, "batch_size": 8,
                                 "train_fraction": 0.8, "val_fraction": 0.1, "eval_targets": 0},
                        "optim": {"schedule": "plateau", "patience": 0},
                        "train": {"max_steps": 6, "eval_interval": 2, **QUIET}})
    built = []
    result = run(cfg, tmp_path / "run", prepare=lambda exp, *_: built.append(exp))
    exp = built[0]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "val"] == [2, 4, 6]
    assert [r["step"] for r in records if r["split"] == "test"] == [6]  # settings were chosen before it was seen
    assert sorted(exp.evaluate(exp.model)) == ["val/bpc", "val/loss", "val/ppl"]
    assert result["test/loss"] == pytest.approx(exp.final_evaluate(exp.model)["test/loss"], abs=1e-6)


def test_image_training_evaluates_val_only_and_test_once_at_the_end(tiny_fashion):
    cfg = build_config("fashion_mixer", [f"data.path={tiny_fashion}", "data.val_size=100"])
    exp = build_experiment(cfg)
    assert sorted(exp.evaluate(exp.model)) == ["val/acc", "val/loss"]
    assert sorted(exp.final_evaluate(exp.model)) == ["test/acc", "test/loss", "val/acc", "val/loss"]


@pytest.mark.parametrize("name", list_models("text") + list_models("ngram"))
def test_every_language_model_loss_is_over_a_normalised_distribution(name):
    torch.manual_seed(0)
    vocab = 11
    model = create_model(name, vocab_size=vocab).eval()
    x = torch.randint(0, vocab, (3, int(model.context_length)))
    with torch.no_grad():
        logits = model(x)  # (B, V) or (B, T, V)
    assert logits.shape[-1] == vocab
    # The task's loss for each candidate target v is -log p(v): summing exp(-loss) over v must give 1.
    per_target = [language.lm_loss(logits, torch.full(logits.shape[:-1], v), reduction="none") for v in range(vocab)]
    total = torch.stack([torch.exp(-loss) for loss in per_target]).sum(0)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-5)


class RampModel(nn.Module):
    """A fake LM whose log-probability of char v is -v - logsumexp(-0..-(V-1)), whatever the input."""

    def __init__(self, vocab_size: int, context_length: int, kind: str):
        super().__init__()
        self.vocab_size, self.context_length, self.lm_kind = vocab_size, context_length, kind
        self.anchor = nn.Parameter(torch.zeros(0))
        self.windows_seen = 0

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        self.windows_seen += len(idx)
        ramp = -torch.arange(self.vocab_size, dtype=torch.float)  # (V,)
        return ramp.expand(*idx.shape, self.vocab_size) if self.lm_kind == "causal" else \
            ramp.expand(len(idx), self.vocab_size)  # (B, T, V) or (B, V)


def ramp_loss_of(targets: list[int], vocab: int) -> float:
    """What RampModel's mean loss is when exactly `targets` are scored."""
    return sum(targets) / len(targets) + torch.logsumexp(-torch.arange(vocab, dtype=torch.float), 0).item()


def test_stream_loss_scores_each_next_char_of_running_text_once():
    vocab, context = 20, 4
    tokens = torch.arange(vocab)  # the target's id is its position: the mean loss reveals which were scored
    window = TextBatches(tokens, context, 8, kind="window")
    model = RampModel(vocab, context, "window")
    assert language.stream_loss(model, window) == pytest.approx(ramp_loss_of(list(range(context, vocab)), vocab))
    assert model.windows_seen == vocab - context
    causal = TextBatches(tokens, context, 8, kind="causal")
    # Windows start every `context` chars and score positions 1..; the tail shorter than a window is left out.
    scored = list(range(1, 1 + context * ((vocab - 1) // context)))
    assert language.stream_loss(RampModel(vocab, context, "causal"), causal) == pytest.approx(ramp_loss_of(scored, vocab))


def test_eval_targets_thins_evenly_to_the_requested_number():
    vocab, context = 40, 2
    tokens = torch.arange(vocab)
    window = TextBatches(tokens, context, 8, kind="window")
    model = RampModel(vocab, context, "window")
    loss = language.stream_loss(model, window, max_targets=5)
    starts = torch.linspace(0, vocab - context - 1, 5).long()  # first and last window kept, evenly between
    assert model.windows_seen == 5
    assert loss == pytest.approx(ramp_loss_of((starts + context).tolist(), vocab))
    causal = TextBatches(tokens, 4, 8, kind="causal")
    model = RampModel(vocab, 4, "causal")
    language.stream_loss(model, causal, max_targets=12)
    assert model.windows_seen == 3  # 12 targets = three windows of 4


def test_line_data_scores_every_char_and_line_end_but_never_the_padding():
    tokenizer = CharTokenizer("abcd", boundary="\n")
    stream = torch.tensor(tokenizer.encode("\nab\ncd\n"))  # lines "ab", "cd": 6 targets (a, b, \n, c, d, \n)
    vocab = tokenizer.vocab_size
    causal = TextBatches(stream, 3, 4, kind="causal", boundary_id=tokenizer.boundary_id)
    assert language.stream_loss(RampModel(vocab, 3, "causal"), causal) == \
        pytest.approx(ramp_loss_of(tokenizer.encode("ab\ncd\n"), vocab))
    # Window samples also score the stream's opening boundary (after the padding): one extra target per split.
    window = TextBatches(stream, 3, 4, kind="window", boundary_id=tokenizer.boundary_id)
    assert language.stream_loss(RampModel(vocab, 3, "window"), window) == \
        pytest.approx(ramp_loss_of(tokenizer.encode("\nab\ncd\n"), vocab))


class FakeClock:
    """A perf_counter that only moves when a training step says so (one second per step)."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def test_time_budget_stops_training_and_cosine_follows_elapsed_time(tmp_path, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(engine, "time", clock)
    cfg = build_config("fashion_mixer", ["train.max_minutes=0.5", "train.max_steps=1000", "train.progress=false",
                                         "train.log_interval=1", "train.eval_interval=0",
                                         "train.checkpoint_interval=0", "optim.warmup_steps=0",
                                         "optim.schedule=cosine", "optim.min_lr_ratio=0.1", "optim.lr=0.01"])
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))

    def one_second_step(model, batch):
        clock.now += 1.0
        return F.cross_entropy(model(batch[0]), batch[1]), {}

    result = run(cfg, tmp_path / "run", build=lambda config: Experiment(nn.Linear(4, 2), one_second_step,
                                                                        TensorBatches([x, y], 8)))
    assert result["step"] == 30 and result["train_seconds"] == 30.0  # 30 one-second steps fill the 30 s budget
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [r["lr"] for r in records if r["split"] == "train"]
    # Step s starts after s seconds: progress is elapsed / budget (s / 30), far ahead of s / max_steps.
    expected = [0.01 * lr_factor(cfg.optim, s / 30, s) for s in range(30)]
    assert logged == pytest.approx(expected, rel=1e-6)
    assert expected[15] == pytest.approx(0.01 * (0.1 + 0.9 * 0.5))  # half the budget: half-way down the cosine


def test_image_validation_split_is_held_out_of_train_and_leaves_test_alone(tiny_fashion):
    from allmlp.tasks.classification import load_splits

    cfg = build_config("fashion_mixer", [f"data.path={tiny_fashion}", "data.val_size=100"])
    splits = load_splits(cfg)
    everything = load_splits(build_config("fashion_mixer", [f"data.path={tiny_fashion}", "data.val_size=0"]))
    assert len(splits["val"][0]) == 100 and len(splits["train"][0]) == 412
    assert torch.equal(splits["test"][0], everything["test"][0])  # the test images are never touched
    train_rows = {tuple(row.tolist()) for row in splits["train"][0].flatten(1)[:, :40]}
    assert not any(tuple(row.tolist()) in train_rows for row in splits["val"][0].flatten(1)[:, :40])
    assert build_config("fashion_mixer").data.val_size == 5000  # the preset selects on 5,000 held-out images
    with pytest.warns(UserWarning, match="data.val_size=5000 is not below the 512 training images: holding out 51"):
        assert len(load_splits(build_config("fashion_mixer", [f"data.path={tiny_fashion}"]))["val"][0]) == 51
