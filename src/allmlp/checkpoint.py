"""One folder per run: safetensors weights, config.yaml, tokenizer.json, trainer state; all written atomically.

No file of a run folder is unpickled: weights and trainer state are safetensors (tensors plus a JSON header), and
each weights file carries a SHA-256 of its tensor bytes that is checked on load. The trainer state holds its own
copy of the weights, so weights, optimizer, step and RNG states of a checkpoint appear in one rename.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .config import Config, config_yaml
from .configure import load_config
from .files import atomic_write_bytes, replace_durably, temporary_path
from .models.protocol import hook, unwrap

WEIGHTS = "model.safetensors"
EMA_WEIGHTS = "model_ema.safetensors"  # the moving average of the weights, when train.ema_decay > 0
CONFIG = "config.yaml"
TOKENIZER = "tokenizer.json"
TRAINER_STATE = "trainer_state.safetensors"
LEGACY_TRAINER_STATE = "trainer_state.pt"  # run folders written before 0.2: read with torch's safe unpickler only
METRICS = "metrics.jsonl"
DIGEST_KEY = "allmlp.sha256"


class CheckpointError(ValueError):
    """A run folder is missing, incomplete or corrupt; the message names the file."""


def state_dict_for_saving(model: nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous, unshared CPU copies of the unwrapped model's tensors (safetensors refuses shared storage)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in unwrap(model).state_dict().items()}


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and raw bytes of `tensors`, in sorted name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Save tensors as safetensors with their digest in the header, atomically."""
    tmp = temporary_path(path)
    try:
        save_file(tensors, str(tmp), metadata={**(metadata or {}), DIGEST_KEY: tensor_digest(tensors)})
        replace_durably(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_tensors(path: Path, what: str = "safetensors file") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header metadata of a safetensors file, its digest verified when it has one."""
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = dict(fh.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: corrupt {what} ({err})") from None
    expected = metadata.get(DIGEST_KEY)
    if expected is not None and tensor_digest(tensors) != expected:
        raise CheckpointError(f"{path}: corrupt {what} (its bytes do not match the checksum written with it)")
    return tensors, metadata


def save_weights(model: nn.Module, path: Path) -> None:
    """Save the model's state dict as safetensors with a checksum, atomically."""
    save_tensors(state_dict_for_saving(model), path)


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load `state` into `model`, with a one-line error naming `path` when names or shapes do not fit."""
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


def load_weights(model: nn.Module, path: Path) -> None:
    """Load safetensors weights into `model`, with one-line errors for missing, corrupt or mismatched files."""
    state, _ = load_tensors(path, "weights file")
    load_state_into(model, state, path)


def _pack(value, path: str, tensors: dict[str, torch.Tensor]):
    """`value` as JSON-able data, its tensors moved into `tensors` under their path (no pickle anywhere)."""
    if isinstance(value, torch.Tensor):
        tensors[path] = value.detach().to("cpu").contiguous().clone()
        return {"$tensor": path}
    if isinstance(value, dict):
        return {"$dict": [[key, _pack(item, f"{path}/{key}", tensors)] for key, item in value.items()]}
    if isinstance(value, (list, tuple)):
        items = [_pack(item, f"{path}/{i}", tensors) for i, item in enumerate(value)]
        return {"$tuple": items} if isinstance(value, tuple) else items
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"trainer state: cannot store a {type(value).__name__} at {path}")


def _unpack(data, tensors: dict[str, torch.Tensor]):
    """Inverse of `_pack`."""
    if isinstance(data, list):
        return [_unpack(item, tensors) for item in data]
    if isinstance(data, dict):
        if "$tensor" in data:
            return tensors[data["$tensor"]]
        if "$tuple" in data:
            return tuple(_unpack(item, tensors) for item in data["$tuple"])
        return {key: _unpack(item, tensors) for key, item in data["$dict"]}
    return data


def save_trainer_state(run_dir: Path, state: dict) -> None:
    """Weights, optimizer, step and RNG states for --resume, in one safetensors file written atomically."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _pack(state, "state", tensors)
    save_tensors(tensors, Path(run_dir) / TRAINER_STATE, {"allmlp.trainer_state": json.dumps(skeleton)})


def load_trainer_state(run_dir: Path) -> dict | None:
    """The saved trainer state, or None when the run folder has none (legacy .pt files: tensors and plain data only)."""
    path = Path(run_dir) / TRAINER_STATE
    if path.is_file():
        tensors, metadata = load_tensors(path, "trainer state")
        try:
            return _unpack(json.loads(metadata["allmlp.trainer_state"]), tensors)
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{path}: corrupt trainer state ({err.__class__.__name__})") from None
    legacy = Path(run_dir) / LEGACY_TRAINER_STATE
    if not legacy.is_file():
        return None
    try:  # weights_only: torch's restricted unpickler, which builds tensors and plain containers and nothing else
        with warnings.catch_warnings():  # torch warns about a foreign pickle protocol before refusing the file
            warnings.simplefilter("ignore")
            return torch.load(legacy, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises several kinds on a corrupt or hostile file
        raise CheckpointError(f"{legacy}: corrupt or unsafe trainer state ({err.__class__.__name__})") from None


def save_config(run_dir: Path, cfg: Config) -> None:
    """Write the run's config.yaml (atomically)."""
    atomic_write_bytes(Path(run_dir) / CONFIG, config_yaml(cfg).encode())


def save_run(run_dir: Path, model: nn.Module, cfg: Config, tokenizer=None) -> None:
    """Write weights, config and (for text) tokenizer into the run folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    save_weights(model, run_dir / WEIGHTS)
    save_files = hook(unwrap(model), "save_files")  # models with state outside tensors (LightGBM)
    if save_files is not None:
        save_files(run_dir)
    save_config(run_dir, cfg)
    if tokenizer is not None:
        atomic_write_bytes(run_dir / TOKENIZER, json.dumps(tokenizer.to_dict(), ensure_ascii=False).encode())


def check_run_dir(run_dir: str | Path) -> Path:
    """The run folder as a Path (a file inside one means that folder), or a one-line error naming what is wrong."""
    run_dir = Path(run_dir)
    if run_dir.is_file() and (run_dir.parent / CONFIG).is_file():
        run_dir = run_dir.parent
    if not run_dir.is_dir():
        raise CheckpointError(f"run folder not found: {run_dir}")
    for name in (CONFIG, WEIGHTS):
        if not (run_dir / name).is_file():
            raise CheckpointError(f"{run_dir} is not a complete run folder: {name} is missing")
    return run_dir


def load_tokenizer(run_dir: Path, cfg: Config):
    """The run's tokenizer (char or bytes), checked against the model's vocabulary size; None for runs without one."""
    from .data.text import tokenizer_from_dict

    path = run_dir / TOKENIZER
    if not path.is_file():
        return None
    try:
        tokenizer = tokenizer_from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{path}: corrupt tokenizer ({err.__class__.__name__})") from None
    vocab = cfg.model.args.get("vocab_size")
    if vocab is not None and tokenizer.vocab_size != vocab:
        raise CheckpointError(f"{path}: {tokenizer.vocab_size} characters, but the model's vocabulary has {vocab}; "
                              "the tokenizer is not this run's")
    return tokenizer


def load_run(run_dir: str | Path, map_location: str = "cpu", ema: bool = False):
    """Rebuild the model of a run folder: returns (model in eval mode, config, tokenizer or None); `ema`: with the
    moving average of the weights (model_ema.safetensors) instead of the raw ones."""
    from .models import create_model

    run_dir = check_run_dir(run_dir)
    cfg = load_config(run_dir / CONFIG)
    if "." in cfg.model.name:  # trained through allmlp.fit: a class of the user's, not a registered model
        raise CheckpointError(f"{run_dir} holds {cfg.model.name}, a model built in Python: build it again and load "
                              f"{run_dir / WEIGHTS} with allmlp.checkpoint.load_weights(model, path)")
    if ema and not (run_dir / EMA_WEIGHTS).is_file():
        raise CheckpointError(f"{run_dir} has no {EMA_WEIGHTS}: it was trained without train.ema_decay")
    model = create_model(cfg.model.name, **cfg.model.args)
    load_weights(model, run_dir / (EMA_WEIGHTS if ema else WEIGHTS))
    load_files = hook(model, "load_files")  # e.g. the LightGBM booster's model.txt
    if load_files is not None:
        load_files(run_dir)
    model.to(map_location).eval()
    return model, cfg, load_tokenizer(run_dir, cfg)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """All records of a run's metrics.jsonl; a last line cut short by a crash is skipped, other bad lines are errors."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CheckpointError(f"{path}: not UTF-8 text") from None
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # no newline after it: the write was cut off; the writer rewrites it on resume
                break
            raise CheckpointError(f"{path}:{number}: not a JSON record") from None
        if not isinstance(record, dict):
            raise CheckpointError(f"{path}:{number}: not a JSON record")
        records.append(record)
    return records
