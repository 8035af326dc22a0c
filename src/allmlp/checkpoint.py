"""One folder per run: safetensors weights, config.yaml, tokenizer.json, trainer state; all written atomically."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import Config, config_yaml, load_config

WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
TOKENIZER = "tokenizer.json"
TRAINER_STATE = "trainer_state.pt"
METRICS = "metrics.jsonl"


class CheckpointError(ValueError):
    """A run folder is missing, incomplete or corrupt; the message names the file."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename, so a crash never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under Fabric, DDP and torch.compile wrappers (its state dict has the real names)."""
    while True:
        inner = getattr(model, "_forward_module", None) or getattr(model, "_orig_mod", None) \
            or getattr(model, "module", None)
        if inner is None or not isinstance(inner, nn.Module):
            return model
        model = inner


def state_dict_for_saving(model: nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous, unshared CPU copies of the unwrapped model's tensors (safetensors refuses shared storage)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in unwrap(model).state_dict().items()}


def save_weights(model: nn.Module, path: Path) -> None:
    """Save the model's state dict as safetensors, atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state_dict_for_saving(model), str(tmp))
    os.replace(tmp, path)


def load_weights(model: nn.Module, path: Path) -> None:
    """Load safetensors weights into `model`, with one-line errors for missing, corrupt or mismatched files."""
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: corrupt safetensors file ({err})") from None
    target = unwrap(model)
    own = target.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = [f"{label}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise CheckpointError(f"{path} does not fit model {type(target).__name__} ({'; '.join(parts)})")
    target.load_state_dict(state)


def save_run(run_dir: Path, model: nn.Module, cfg: Config, tokenizer=None) -> None:
    """Write weights, config and (for text) tokenizer into the run folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    save_weights(model, run_dir / WEIGHTS)
    save_files = getattr(unwrap(model), "save_files", None)  # models with state outside tensors (LightGBM)
    if save_files is not None:
        save_files(run_dir)
    atomic_write_bytes(run_dir / CONFIG, config_yaml(cfg).encode())
    if tokenizer is not None:
        atomic_write_bytes(run_dir / TOKENIZER, json.dumps(tokenizer.to_dict(), ensure_ascii=False).encode())


def save_trainer_state(run_dir: Path, state: dict) -> None:
    """Optimizer, scheduler, step and RNG states for --resume, atomically."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(run_dir / TRAINER_STATE, buf.getvalue())


def load_trainer_state(run_dir: Path) -> dict | None:
    """The saved trainer state, or None when the run folder has none."""
    path = run_dir / TRAINER_STATE
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch.load raises several kinds on a corrupt file
        raise CheckpointError(f"{path}: corrupt trainer state ({err.__class__.__name__})") from None


def check_run_dir(run_dir: str | Path) -> Path:
    """The run folder as a Path, or a one-line error when it is not a run folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run folder not found: {run_dir}")
    for name in (CONFIG, WEIGHTS):
        if not (run_dir / name).is_file():
            raise CheckpointError(f"{run_dir} is not a complete run folder: {name} is missing")
    return run_dir


def load_run(run_dir: str | Path, map_location: str = "cpu"):
    """Rebuild the model of a run folder: returns (model in eval mode, config, tokenizer or None)."""
    from .models import create_model

    run_dir = check_run_dir(run_dir)
    cfg = load_config(run_dir / CONFIG)
    model = create_model(cfg.model.name, **cfg.model.args)
    load_weights(model, run_dir / WEIGHTS)
    if hasattr(model, "load_files"):  # e.g. the LightGBM booster's model.txt
        model.load_files(run_dir)
    model.to(map_location).eval()
    tokenizer = None
    if (run_dir / TOKENIZER).is_file():
        from .data.text import CharTokenizer

        try:
            tokenizer = CharTokenizer.from_dict(json.loads((run_dir / TOKENIZER).read_text()))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise CheckpointError(f"{run_dir / TOKENIZER}: corrupt tokenizer ({err.__class__.__name__})") from None
    return model, cfg, tokenizer


def read_metrics(run_dir: str | Path) -> list[dict]:
    """All records of a run's metrics.jsonl."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

