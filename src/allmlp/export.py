"""A deployable model file (onnx, torchscript or pt2) of a run, checked against the checkpoint's logits."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

FORMATS = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt", "pt2": "model.pt2"}


class ExportError(ValueError):
    """The model cannot be exported, or the exported file does not reproduce its logits."""


def example_input(model: nn.Module, cfg, batch_size: int = 2, tokenizer=None) -> torch.Tensor:
    """A random input batch of the shape the run's model takes: images (B, C, H, W) or token ids (B, T)."""
    from .models import model_info

    info = model_info(cfg.model.name)
    generator = torch.Generator().manual_seed(0)
    if info["task"] == "text":
        vocab = tokenizer.vocab_size if tokenizer is not None else int(cfg.model.args.get("vocab_size", 2))
        return torch.randint(0, vocab, (batch_size, int(model.context_length)), generator=generator)
    args = cfg.model.args
    chans, height, width = info["input_size"] or (3, 32, 32)
    if "img_shape" in args:
        chans, height, width = args["img_shape"]
    chans = args.get("in_chans", chans)
    size = args.get("img_size", (height, width))
    height, width = (size, size) if isinstance(size, int) else size
    return torch.randn(batch_size, chans, height, width, generator=generator)


def _batch_dim():
    return torch.export.Dim("batch", min=1, max=4096)


def export_model(model: nn.Module, example: torch.Tensor, fmt: str, out: str | Path) -> Path:
    """Write `model` (eval mode) to `out` in `fmt`, with a dynamic batch dimension."""
    out = Path(out)
    if fmt == "pt2" and out.suffix != ".pt2":
        raise ExportError(f"--out {out}: torch.export archives must end in .pt2")
    model = model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit deprecation and tracer notices
            if fmt == "torchscript":
                torch.jit.trace(model, example).save(str(out))
            elif fmt == "onnx":
                logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" notices
                torch.onnx.export(model, (example,), str(out), input_names=["input"], output_names=["logits"],
                                  dynamic_shapes=({0: _batch_dim()},), dynamo=True, verbose=False)
            elif fmt == "pt2":
                torch.export.save(torch.export.export(model, (example,), dynamic_shapes=({0: _batch_dim()},)),
                                  str(out))
            else:
                raise ExportError(f"--format: unknown format {fmt!r}; choose {', '.join(FORMATS)}")
    except ExportError:
        raise
    except Exception as err:  # exporters raise many kinds; the first line says what failed
        first = str(err).strip().splitlines()[0] if str(err).strip() else err.__class__.__name__
        raise ExportError(f"cannot export {type(model).__name__} to {fmt}: {first}") from None
    return out


def run_exported(path: str | Path, fmt: str, inputs: torch.Tensor) -> torch.Tensor:
    """Logits of an exported file on `inputs` (onnxruntime when installed, else onnx's reference evaluator)."""
    path = Path(path)
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.load(str(path)).eval()(inputs).detach()
    if fmt == "pt2":
        return torch.export.load(str(path)).module()(inputs).detach()
    feed = inputs.numpy()
    try:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return torch.from_numpy(np.asarray(session.run(None, {name: feed})[0]))
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(str(path))
        return torch.from_numpy(np.asarray(evaluator.run(None, {evaluator.input_names[0]: feed})[0]))


def check_export(model: nn.Module, path: str | Path, fmt: str, inputs: torch.Tensor, atol: float = 1e-4) -> float:
    """Largest |exported - checkpoint| logit difference on `inputs`; an ExportError when it exceeds `atol`."""
    with torch.no_grad():
        expected = model.eval()(inputs).float()
    got = run_exported(path, fmt, inputs).float()
    if got.shape != expected.shape:
        raise ExportError(f"{path}: exported logits have shape {tuple(got.shape)}, expected {tuple(expected.shape)}")
    diff = (got - expected).abs().max().item()
    if not diff <= atol:
        raise ExportError(f"{path}: exported logits differ from the checkpoint's by {diff:.3g} (> {atol:g})")
    return diff


def export_run(run: str | Path, fmt: str = "onnx", out: str | Path | None = None, atol: float = 1e-4) -> dict:
    """Export a run folder's model (default file: RUN/model.onnx, model.torchscript.pt or model.pt2) and check it
    on another batch size than the one traced; returns {"path", "model", "max_diff"}."""
    from .checkpoint import load_run

    if fmt not in FORMATS:
        raise ExportError(f"--format: unknown format {fmt!r}; choose {', '.join(FORMATS)}")
    model, cfg, tokenizer = load_run(run)
    out = Path(out) if out else Path(run) / FORMATS[fmt]
    export_model(model, example_input(model, cfg, 2, tokenizer), fmt, out)
    # Checked on another batch size than the one traced, so a batch size frozen into the file shows up here.
    diff = check_export(model, out, fmt, example_input(model, cfg, 3, tokenizer), atol)
    return {"path": out, "model": cfg.model.name, "max_diff": diff}
