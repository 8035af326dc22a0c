"""Character language modelling: text splits, window / causal / centered batches, loss in nats, bits per char."""

from __future__ import annotations

import math
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import Config
from ..data.prepared import load_token_splits
from ..data.text import LM_KINDS, TextBatches
from ..experiment import Experiment
from ..models import create_model, model_kwargs
from ..models.protocol import hook, unwrap


FALLBACK_CONTEXT_LENGTH = 64  # a model built in Python without a context_length, and no data.context_length


def data_model_args(cfg: Config, tokenizer) -> dict:
    """The model arguments the data decides: the vocabulary size, and `data.context_length` when > 0 (values the
    config also gives must agree)."""
    accepted = model_kwargs(cfg.model.name)
    derived = {}
    given_vocab = cfg.model.args.get("vocab_size", tokenizer.vocab_size)
    if "vocab_size" in accepted:
        if given_vocab != tokenizer.vocab_size:
            raise ValueError(f"model.vocab_size={given_vocab}, but the corpus has {tokenizer.vocab_size} distinct "
                             "characters; leave model.vocab_size unset")
        derived["vocab_size"] = tokenizer.vocab_size
    wanted, given = cfg.data.context_length, cfg.model.args.get("context_length")
    if wanted > 0 and "context_length" in accepted:
        if given is not None and given != wanted:
            raise ValueError(f"data.context_length={wanted} and model.context_length={given} disagree; set one")
        derived["context_length"] = wanted
    return derived


def context_length(cfg: Config, model: nn.Module) -> int:
    """The chars one sample holds: the model's own context_length (the protocol), else data.context_length."""
    return int(getattr(model, "context_length", cfg.data.context_length or FALLBACK_CONTEXT_LENGTH))


def sample_kind(cfg: Config, model: nn.Module) -> str:
    """The sample kind of `data.type` ("auto": the model's `lm_kind`), checked against the model."""
    model_kind = getattr(model, "lm_kind", None)
    kind = model_kind if cfg.data.type == "auto" else cfg.data.type
    if kind not in LM_KINDS:
        raise ValueError(f"data.type={cfg.data.type!r} for model {cfg.model.name}: expected auto or one of "
                         f"{', '.join(LM_KINDS)} (the model's lm_kind is {model_kind!r})")
    if model_kind is not None and kind != model_kind:
        raise ValueError(f"data.type={kind} does not fit model {cfg.model.name}, a {model_kind} language model")
    return kind


def unigram_log_prior(tokens: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Log frequencies (V,) of the chars in `tokens`, add-one smoothed (an unseen char keeps a finite logit)."""
    counts = torch.bincount(tokens.long(), minlength=vocab_size)[:vocab_size].double() + 1
    return (counts / counts.sum()).log().float()


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0,
            reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy in nats for logits (B, V) or (B, T, V); targets of -1 are ignored."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=-1,
                           label_smoothing=label_smoothing, reduction=reduction)


@torch.no_grad()
def stream_loss(model: nn.Module, batches: TextBatches, max_targets: int = 0, batch_size: int = 256) -> float:
    """Mean loss (nats per char) over the stream of `batches`, windows in order (at most `max_targets`)."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    starts = batches.eval_starts(max_targets)
    for chunk in starts.split(batch_size):
        x, y = batches.samples(chunk)
        logits = model(x.to(device))
        y = y.to(device)
        total += lm_loss(logits, y, reduction="sum").item()
        count += int((y >= 0).sum())
    return total / max(count, 1)


def loss_metrics(split: str, nats: float) -> dict:
    """Loss in nats, bits per char and perplexity under `split/`."""
    perplexity = math.exp(nats) if nats < math.log(sys.float_info.max) else math.inf  # overflow is inf, not a cap
    return {f"{split}/loss": nats, f"{split}/bpc": nats / math.log(2), f"{split}/ppl": perplexity}


def build(cfg: Config, model: nn.Module | None = None) -> Experiment:
    """Experiment for a character language model on the configured corpus (`model`: one built in Python)."""
    tokenizer, streams = load_token_splits(cfg.data)
    cfg.model.args.update(data_model_args(cfg, tokenizer))  # recorded: the run folder rebuilds the same model
    if model is None:
        model = create_model(cfg.model.name, **cfg.model.args)
        start_at_unigram = hook(model, "start_at_unigram")
        if start_at_unigram is not None:  # the high-order nets: logits start at the training text's prior
            start_at_unigram(unigram_log_prior(streams["train"], tokenizer.vocab_size))
    kind = sample_kind(cfg, model)
    context = context_length(cfg, model)
    boundary = tokenizer.boundary_id

    def batches_for(split: str, seed: int) -> TextBatches:
        return TextBatches(streams[split], context, cfg.data.batch_size, seed, kind, boundary)

    train = batches_for("train", cfg.train.seed)
    if cfg.data.repeats < 1:
        raise ValueError(f"data.repeats must be >= 1, got {cfg.data.repeats}")
    train.steps_per_epoch *= cfg.data.repeats  # an epoch (train.max_epochs) is data.repeats passes over the text
    held_out = {split: batches_for(split, 0) for split in ("val", "test") if len(streams[split]) > context + 2}
    manual = cfg.optim.manual_backprop
    if manual and hook(model, "loss_and_grads") is None:
        raise ValueError(f"optim.manual_backprop=true: only models with hand-written gradients (bengio, bengio_raw, "
                         f"bengio_layers) train without autograd, not {cfg.model.name}")

    def loss_fn(model, batch):
        x, y = batch
        if manual:
            return unwrap(model).loss_and_grads(x, y), {}
        return lm_loss(model(x), y, cfg.optim.label_smoothing), {}

    def evaluate(model, splits=("val",)):
        out = {}
        for split in [s for s in splits if s in held_out]:
            out.update(loss_metrics(split, stream_loss(model, held_out[split], cfg.data.eval_targets,
                                                       cfg.data.eval_batch_size)))
        return out

    targets = context if kind == "causal" else 1
    return Experiment(model, loss_fn, train, evaluate, tokenizer=tokenizer,
                      samples_per_batch=cfg.data.batch_size * targets, manual_backward=manual,
                      final_evaluate=lambda model: evaluate(model, ("val", "test")))


def evaluate_run(model: nn.Module, cfg: Config, run_dir, split: str = "test", tokenizer=None) -> dict:
    """Loss (nats), bits per char and perplexity of a trained run on val and test (and `split`), all targets."""
    tokenizer, streams = load_token_splits(cfg.data, tokenizer)
    if split not in streams:
        raise ValueError(f"split {split!r} not available; choose one of {', '.join(streams)}")
    kind = sample_kind(cfg, model)
    context = context_length(cfg, model)
    out = {}
    for name in dict.fromkeys(("val", "test", split)):
        if len(streams[name]) > context + 2:
            batches = TextBatches(streams[name], context, cfg.data.batch_size, 0, kind, tokenizer.boundary_id)
            out.update(loss_metrics(name, stream_loss(model, batches, 0, cfg.data.eval_batch_size)))
    return out

