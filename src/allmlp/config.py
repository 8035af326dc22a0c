"""Typed run configuration: four dataclass sections, YAML presets and `section.key=value` overrides."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config key or value is wrong; the message names the key."""


@dataclass
class ModelConfig:
    """Which registered model to build; every other key is a keyword argument of its factory."""

    name: str = "mixer_tiny_28"
    args: dict = field(default_factory=dict)


@dataclass
class DataConfig:
    """Where the data comes from and how batches are made."""

    name: str = "fashion_mnist"  # a registered data set, or "text" with `path`
    path: str = ""  # a local folder of data files, or any UTF-8 text file
    batch_size: int = 128  # global batch (all processes together)
    eval_batch_size: int = 1000
    augment: bool = True  # images: random crop with padding and horizontal flip
    crop_padding: int = 2
    hflip: bool = True
    eval_hflip: bool = False  # images: evaluate on the mean logits of each image and its mirror image
    val_size: int = 0  # images: hold this many training images out for validation
    # text corpora
    context_length: int = 0  # text: chars a model sees; 0 keeps the model's own default (model.context_length)
    train_fraction: float = 0.9
    val_fraction: float = 0.05
    unknown_chars: str = "error"  # "error" or "drop" characters the tokenizer never saw
    val_lines: int = 0  # line data sets: hold this many shuffled lines out for val (with test_lines: overrides fractions)
    test_lines: int = 0  # line data sets: ... and this many for test (makemore: 1000)
    eval_targets: int = 65536  # text: predicted chars evaluated per split during training (0 = all)
    type: str = "auto"  # text samples: auto (from the model), window, causal, centered, sequence
    repeats: int = 1  # high-order nets: passes over the text per epoch
    max_chars: int = 0  # text: only the first N characters of the corpus (0 = all), e.g. one ~120 KB book
    add_channel_dimension: bool = False


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule."""

    name: str = "adamw"  # adamw, adam, sgd, lion
    lr: float = 3e-3
    weight_decay: float = 0.05
    betas: tuple = (0.9, 0.999)
    momentum: float = 0.9  # sgd only
    schedule: str = "cosine"  # cosine, constant, plateau
    warmup_steps: int = 200
    min_lr_ratio: float = 0.01  # cosine ends at lr * min_lr_ratio
    patience: int = 10  # plateau: evaluations without improvement before the lr drops
    grad_clip: float = 1.0  # max global gradient norm; 0 disables
    label_smoothing: float = 0.0
    manual_backprop: bool = False  # bengio scratch models: gradients by hand, no loss.backward()


@dataclass
class TrainConfig:
    """Length of training, devices, precision, logging and checkpointing."""

    max_steps: int = 2000
    max_epochs: float = 0  # when > 0, overrides max_steps
    max_minutes: float = 0  # when > 0, stop (and save) after this much training time
    accumulate_grad_batches: int = 1
    seed: int = 0
    accelerator: str = "auto"  # cpu, cuda, mps, auto
    devices: int = 1
    strategy: str = "auto"  # auto, ddp
    num_nodes: int = 1
    precision: str = "32-true"  # 32-true, bf16-mixed, 16-mixed (GPU only)
    compile: bool = False  # torch.compile the model (checkpoints keep uncompiled names)
    log_interval: int = 50
    eval_interval: int = 500
    checkpoint_interval: int = 500
    viz_interval: int = 0  # TensorBoard images every N steps; 0: at evaluations only
    out_dir: str = "runs"
    run_name: str = ""  # default: the preset name
    threads: int = 0  # torch intra-op threads on CPU; 0 leaves torch's default
    progress: bool = True


@dataclass
class Config:
    """A whole run: model, data, optimizer and training sections."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str = ""

    def to_dict(self) -> dict:
        """Plain nested dict (model args flattened into the model section), as saved in config.yaml."""
        out = dataclasses.asdict(self)
        out["model"] = {"name": self.model.name, **self.model.args}
        out["optim"]["betas"] = list(self.optim.betas)
        return out


SECTIONS = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig, "train": TrainConfig}

# Option names of the language-interpolation seed, mapped onto ours.
ALIASES = {
    "net": "model",
    "optimizer": "optim",
    "batch_size": "data.batch_size",
    "max_epochs": "train.max_epochs",
    "accumulate_grad_batches": "train.accumulate_grad_batches",
    "data.max_features": "data.context_length",  # high-order nets: context characters fed as features
    "net.features": "data.context_length",  # the seed's centered (cellular automaton) model
    "initialize.type": "model.initialization",
    "net.model_type": "model.name",
}
# `net=small`, `optimizer=lion`: a bare section key picks the section's name (seed networks map to ho_*).
NAME_ALIASES = {"net": "model.name", "model": "model.name", "optimizer": "optim.name", "optim": "optim.name"}


def preset_names() -> list[str]:
    """Names of the presets shipped with the package."""
    return sorted(p.name[:-5] for p in resources.files("allmlp.presets").iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str) -> dict:
    """The override dict of a shipped preset, or of a YAML file given by path."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        text = path.read_text()
    else:
        res = resources.files("allmlp.presets") / f"{name}.yaml"
        if not res.is_file():
            close = difflib.get_close_matches(name, preset_names(), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; available: {', '.join(preset_names())}"
            raise ConfigError(f"unknown preset {name!r}{hint}")
        text = res.read_text()
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"preset {name!r} must be a mapping of sections")
    return data


def parse_value(text: str) -> Any:
    """Parse a command-line value: int, float (3e-3 too), bool, list, or string."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return text if value is None and text.strip() not in ("null", "~") else value


def _coerce(key: str, value: Any, annotation: Any, default: Any) -> Any:
    """Check `value` against the declared type of `key`, converting where it is lossless."""
    kind = annotation if isinstance(annotation, type) else type(default)
    if default is None or kind is type(None):
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind in (tuple, list):
        if isinstance(value, (list, tuple)):
            return kind(value)
        if isinstance(value, (int, float)) and isinstance(default, (tuple, list)):
            return value  # e.g. img_size=32 where the default is a pair
    elif kind is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif kind is dict:
        if isinstance(value, dict):
            return value
    else:
        return value
    raise ConfigError(f"{key}: expected {kind.__name__}, got {value!r} ({type(value).__name__})")


def _unknown(key: str, valid) -> ConfigError:
    name = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, list(valid), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; valid keys: {', '.join(valid)}"
    return ConfigError(f"unknown config key {key!r}{hint}")


def _canonical(key: str) -> str:
    head, _, rest = key.partition(".")
    if key in NAME_ALIASES:
        return NAME_ALIASES[key]
    if key in ALIASES:
        return ALIASES[key]
    if head in ALIASES and rest:
        return f"{ALIASES[head]}.{rest}"
    return key


def _flatten(tree: dict, prefix: str = "") -> list[tuple[str, Any]]:
    items = []
    for key, value in tree.items():
        full = f"{prefix}{key}"
        section = _canonical(full).split(".")[0]
        if isinstance(value, dict) and (not prefix or section == "model") and full not in ("model.args",):
            items.extend(_flatten(value, full + "."))
        else:
            items.append((full, value))
    return items


def _hidden_keys(key: str) -> str:
    # The seed's nested `net.hidden.width` / `net.hidden.layers` become model args hidden_width / hidden_layers.
    section, _, rest = key.partition(".")
    return f"{section}.{rest.replace('.', '_')}" if section == "model" else key


def build_config(preset: str | dict | None = None, overrides: list[str] | dict | None = None) -> Config:
    """Resolve a preset plus overrides into a validated Config; errors name the offending key."""
    tree = load_preset(preset) if isinstance(preset, str) else dict(preset or {})
    items = _flatten(tree)
    from_preset = len(items)  # items before this index come from the preset, the rest are overrides
    if isinstance(overrides, dict):
        items += list(overrides.items())
    else:
        for item in overrides or []:
            if "=" not in item:
                raise ConfigError(f"override {item!r} must look like section.key=value")
            key, value = item.split("=", 1)
            items.append((key.strip(), parse_value(value)))
    cfg = Config(preset=preset if isinstance(preset, str) else "")
    model_args: dict[str, Any] = {}
    preset_model_args: set[str] = set()  # the preset's own model keys: dropped when an override swaps the model
    for index, (raw_key, value) in enumerate(items):
        key = _hidden_keys(_canonical(raw_key))
        section, _, name = key.partition(".")
        if section not in SECTIONS or not name:
            raise _unknown(raw_key, [f"{s}.<key>" for s in SECTIONS])
        if section == "model" and name != "name":
            model_args[name] = value
            if index < from_preset:
                preset_model_args.add(name)
            else:
                preset_model_args.discard(name)
            continue
        target = getattr(cfg, section)
        fields = {f.name: f for f in dataclasses.fields(target)}
        if name not in fields:
            raise _unknown(f"{section}.{name}", fields)
        hints = typing.get_type_hints(type(target))
        setattr(target, name, _coerce(key, value, hints[name], getattr(target, name)))
    from .models.highorder.zoo import resolve_name

    preset_model = resolve_name(str((tree.get("model") or {}).get("name", cfg.model.name)))
    cfg.model.name = resolve_name(cfg.model.name)
    if cfg.model.name != preset_model:  # e.g. `allmlp train fashion_mixer model.name=mlp_classifier`
        from .models import model_kwargs

        try:
            accepted = model_kwargs(cfg.model.name)
        except KeyError:
            accepted = None  # validate_model_args names the unknown model
        if accepted is not None:
            model_args = {k: v for k, v in model_args.items() if k not in preset_model_args or k in accepted}
    if cfg.data.type == "sequence":  # the language-interpolation seed's name for next-char windows
        cfg.data.type = "window"
    cfg.model.args = validate_model_args(cfg.model.name, model_args)
    return cfg


def validate_model_args(model_name: str, args: dict) -> dict:
    """Check model keyword arguments against the registered factory's signature and defaults."""
    from .models import model_kwargs

    if "." in model_name and not args:  # a module.Class trained through allmlp.fit: nothing registered to check
        return {}
    try:
        params = model_kwargs(model_name)
    except KeyError as err:
        raise ConfigError(f"model.name: {err.args[0]}") from None
    out = {}
    for name, value in args.items():
        if name not in params:
            raise _unknown(f"model.{name}", params)
        default = params[name].default
        annotation = params[name].annotation
        if isinstance(annotation, str) or annotation is params[name].empty or isinstance(annotation, types.UnionType):
            annotation = type(default) if default is not params[name].empty else object
        out[name] = _coerce(f"model.{name}", value, annotation, default)
    return out


def config_yaml(cfg: Config) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(config_yaml(cfg))


def load_config(path: str | Path) -> Config:
    """Read a config.yaml written by `save_config` back into a Config."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err.__class__.__name__})") from None
    preset = tree.pop("preset", "")
    cfg = build_config(tree)
    cfg.preset = preset
    return cfg
