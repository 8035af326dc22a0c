"""Typed run configuration: four dataclass sections, YAML presets and `section.key=value` overrides."""

from __future__ import annotations

import dataclasses
import difflib
import reprlib
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

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
    img_size: int = 0  # images: resize every batch (train and eval) to this side, bilinear, e.g. 72; 0 keeps it
    mixup_alpha: float = 0.0  # images: mixup with lambda ~ Beta(alpha, alpha); 0 disables (labels become soft)
    cutmix_alpha: float = 0.0  # images: cutmix likewise; with mixup too, each mixed image uses one of the two
    mix_prob: float = 1.0  # images: share of training images mixed when mixup or cutmix is on
    random_erasing: float = 0.0  # images: probability of erasing a random box of each training image with noise
    # text corpora
    context_length: int = 0  # text: chars a model sees; 0 keeps the model's own default (model.context_length)
    train_fraction: float = 0.9
    val_fraction: float = 0.05
    unknown_chars: str = "error"  # "error" or "drop" characters the tokenizer never saw
    tokenizer: str = "char"  # text: "char" (the training split's chars) or "bytes" (UTF-8, vocabulary 256)
    prepared: bool = False  # text: read token files made by `allmlp data prepare` (memory-mapped) instead of the text
    val_lines: int = 0  # line data sets: hold this many shuffled lines out for val (with test_lines: overrides fractions)
    test_lines: int = 0  # line data sets: ... and this many for test (makemore: 1000)
    eval_targets: int = 65536  # text: predicted chars evaluated per split during training (0 = all)
    type: str = "auto"  # text samples: auto (from the model), window, causal, centered, sequence
    repeats: int = 1  # high-order nets: passes over the text per epoch
    max_chars: int = 0  # text: only the first N characters of the corpus (0 = all), e.g. one ~120 KB book


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

    max_steps: int = 2000  # 0: no steps, the run only evaluates and saves (count models fit when built)
    max_epochs: float = 0  # when > 0, overrides max_steps
    max_minutes: float = 0  # when > 0, stop (and save) after this much training time
    accumulate_grad_batches: int = 1
    seed: int = 0
    accelerator: str = "auto"  # cpu, cuda, mps, auto
    devices: int = 1
    strategy: str = "auto"  # auto, ddp
    num_nodes: int = 1
    precision: str = "auto"  # auto (measured on this machine, docs/precision.md), 32-true, bf16-mixed, 16-mixed
    precision_chosen: str = ""  # what auto chose for this run (written by the engine; --resume keeps it)
    precision_ratio: float = 0.0  # auto's probe: bf16-mixed over fp32 training speed (0: not measured)
    compile: bool = False  # torch.compile the model (checkpoints keep uncompiled names)
    log_interval: int = 50
    eval_interval: int = 500
    checkpoint_interval: int = 500
    viz_interval: int = 0  # TensorBoard images every N steps; 0: at evaluations only
    out_dir: str = "runs"
    run_name: str = ""  # default: the preset name
    threads: int = 0  # torch intra-op threads; 0: OMP_NUM_THREADS if set, else physical cores / local processes
    progress: bool = True
    ema_decay: float = 0.0  # > 0: keep an exponential moving average of the weights, evaluated and saved beside them


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

_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = 80
_SHORT_REPR.maxlevel = 2


def shown(value: Any) -> str:
    """A value as an error message shows it: repr, shortened, one line (a YAML alias can nest a billion items)."""
    return _SHORT_REPR.repr(value)


def preset_names() -> list[str]:
    """Names of the presets shipped with the package."""
    return sorted(p.name[:-5] for p in resources.files("allmlp.presets").iterdir() if p.name.endswith(".yaml"))


def read_yaml(path: str | Path) -> Any:
    """The YAML document of a file, built by `yaml.safe_load` (no tags that run code); errors name the file."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = " ".join(str(getattr(err, "problem", None) or err.__class__.__name__).split())
        raise ConfigError(f"{path}: not valid YAML ({where}{problem})") from None


def check_tree(tree: Any, source: str) -> dict:
    """A preset or config.yaml document as a mapping of sections; `source` (a file, a preset) names it in errors."""
    expected = f"a mapping of sections ({', '.join(SECTIONS)})"
    if tree is None:
        raise ConfigError(f"{source} is empty: expected {expected}")
    if not isinstance(tree, dict):
        raise ConfigError(f"{source}: expected {expected}, found a {type(tree).__name__}")
    out = {}
    for key, value in tree.items():
        if value is None and key in SECTIONS:
            continue  # an empty section (`model:` with nothing under it) sets nothing
        if key in ("data", "train") and not isinstance(value, dict):
            raise ConfigError(f"{source}: section {key!r} must be a mapping of keys, found "
                              f"{type(value).__name__} {shown(value)}")
        out[key] = value
    return out


def load_preset(name: str) -> dict:
    """The override dict of a shipped preset, or of a YAML file given by path."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return check_tree(read_yaml(path), str(path))
    res = resources.files("allmlp.presets") / f"{name}.yaml"
    if not res.is_file():
        close = difflib.get_close_matches(name, preset_names(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; available: {', '.join(preset_names())}"
        raise ConfigError(f"unknown preset {name!r}{hint}")
    return check_tree(yaml.safe_load(res.read_text()), f"preset {name!r}")


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


def coerce(key: str, value: Any, annotation: Any, default: Any) -> Any:
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
    raise ConfigError(f"{key}: expected {kind.__name__}, got {shown(value)} ({type(value).__name__})")


def unknown_key(key: str, valid) -> ConfigError:
    """The error for a key that is not among `valid`, naming the closest valid ones."""
    name = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, list(valid), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; valid keys: {', '.join(valid)}"
    return ConfigError(f"unknown config key {key!r}{hint}")


MAX_NESTING = 4  # model.hidden.width is 3 deep; a YAML alias can make a mapping contain itself
LEAF_SECTIONS = ("data", "optim", "train")  # sections whose keys hold values, never mappings


def flatten(tree: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """A preset's mapping as (dotted key, value) pairs; the model section may nest (`model.hidden.width`)."""
    items = []
    for key, value in tree.items():
        full = f"{prefix}{key}"
        if full.count(".") >= MAX_NESTING:
            raise ConfigError(f"{shown(full)}: nested deeper than {MAX_NESTING} levels")
        nests = not prefix or full.split(".")[0] not in LEAF_SECTIONS
        if isinstance(value, dict) and nests and full != "model.args":
            items.extend(flatten(value, full + "."))
        else:
            items.append((full, value))
    return items


def parse_overrides(overrides: list[str] | dict | None) -> list[tuple[str, Any]]:
    """`section.key=value` words (or a dict) as (dotted key, parsed value) pairs."""
    if isinstance(overrides, dict):
        return list(overrides.items())
    items = []
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, value = item.split("=", 1)
        items.append((key.strip(), parse_value(value)))
    return items


def _at_least(low: float) -> tuple[Callable[[Any], bool], str]:
    return (lambda value: value >= low), f"must be >= {low}"


def _above(low: float) -> tuple[Callable[[Any], bool], str]:
    return (lambda value: value > low), f"must be > {low}"


def _fraction(include_one: bool = False) -> tuple[Callable[[Any], bool], str]:
    if include_one:
        return (lambda value: 0 <= value <= 1), "must be in [0, 1]"
    return (lambda value: 0 <= value < 1), "must be in [0, 1)"


def _one_of(*choices: str, ignore_case: bool = False) -> tuple[Callable[[Any], bool], str]:
    def test(value: Any) -> bool:
        return (str(value).lower() if ignore_case else value) in choices

    return test, f"must be one of {', '.join(choices)}"


def _betas(value: Any) -> bool:
    return (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in value))


# Fabric's precision and strategy names (lightning.fabric.connector); written out to keep lightning out of config.
PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "bf16-true", "bf16", "16-mixed", "16-true", "16", "64-true",
              "64", "transformer-engine", "transformer-engine-float16")
AUTO_PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")  # what train.precision=auto resolves to
STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "ddp_find_unused_parameters_true", "dp",
              "fsdp", "fsdp_cpu_offload", "deepspeed", "deepspeed_stage_1", "deepspeed_stage_2", "deepspeed_stage_3")

# key -> (test, what the value must be): values that would crash a run later or silently do nothing.
VALUE_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "data.batch_size": _at_least(1),
    "data.eval_batch_size": _at_least(1),
    "data.crop_padding": _at_least(0),
    "data.val_size": _at_least(0),
    "data.img_size": _at_least(0),
    "data.mixup_alpha": _at_least(0),
    "data.cutmix_alpha": _at_least(0),
    "data.mix_prob": _fraction(include_one=True),
    "data.random_erasing": _fraction(include_one=True),
    "data.context_length": _at_least(0),
    "data.train_fraction": ((lambda value: 0 < value <= 1), "must be in (0, 1]"),
    "data.val_fraction": _fraction(),
    "data.unknown_chars": _one_of("error", "drop"),
    "data.tokenizer": _one_of("char", "bytes"),
    "data.val_lines": _at_least(0),
    "data.test_lines": _at_least(0),
    "data.eval_targets": _at_least(0),
    "data.type": _one_of("auto", "window", "causal", "centered"),  # compat reads "sequence" as "window"
    "data.repeats": _at_least(1),
    "data.max_chars": _at_least(0),
    "optim.name": _one_of("adamw", "adam", "sgd", "lion", ignore_case=True),  # build_optimizer lowercases it
    "optim.lr": _above(0),
    "optim.weight_decay": _at_least(0),
    "optim.betas": (_betas, "must be two numbers in [0, 1)"),
    "optim.momentum": _at_least(0),
    "optim.schedule": _one_of("cosine", "constant", "plateau"),
    "optim.warmup_steps": _at_least(0),
    "optim.min_lr_ratio": _fraction(include_one=True),
    "optim.patience": _at_least(0),
    "optim.grad_clip": _at_least(0),
    "optim.label_smoothing": _fraction(),
    "train.max_steps": _at_least(0),
    "train.max_epochs": _at_least(0),
    "train.max_minutes": _at_least(0),
    "train.accumulate_grad_batches": _at_least(1),
    "train.seed": ((lambda value: 0 <= value < 2**32), "must be in [0, 2**32)"),  # Fabric replaces others silently
    "train.accelerator": _one_of("auto", "cpu", "cuda", "gpu", "mps", "tpu"),
    "train.devices": _at_least(1),
    "train.strategy": _one_of(*STRATEGIES),
    "train.num_nodes": _at_least(1),
    "train.precision": _one_of(*PRECISIONS),
    "train.precision_chosen": ((lambda value: value in ("", *AUTO_PRECISIONS)),
                               f"must be empty (auto decides) or one of {', '.join(AUTO_PRECISIONS)}"),
    "train.precision_ratio": _at_least(0),
    "train.log_interval": _at_least(1),
    "train.eval_interval": _at_least(0),
    "train.checkpoint_interval": _at_least(0),
    "train.viz_interval": _at_least(0),
    "train.threads": _at_least(0),
    "train.ema_decay": _fraction(),
}


def validate(cfg: Config) -> Config:
    """Check every value of `cfg` against VALUE_RULES and the rules between keys; errors read `key=value: why`."""
    for key, (test, requirement) in VALUE_RULES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if not test(value):
            raise ConfigError(f"{key}={shown(value)}: {requirement}")
    data, train = cfg.data, cfg.train
    if data.train_fraction + data.val_fraction > 1 + 1e-9:
        raise ConfigError(f"data.train_fraction={data.train_fraction!r} + data.val_fraction={data.val_fraction!r}: "
                          "must sum to at most 1")
    processes = train.devices * train.num_nodes
    if data.batch_size % processes:  # split_for_rank would fail at the first step, once per process
        raise ConfigError(f"data.batch_size={data.batch_size}: must be divisible by train.devices * train.num_nodes "
                          f"= {processes} (it is the global batch, split evenly over the processes)")
    return cfg


def config_from_items(items: list[tuple[str, Any]], preset: str = "") -> Config:
    """A Config from (dotted key, value) pairs in our spelling, later pairs winning; model arguments are kept as
    given (the model registry checks them)."""
    cfg = Config(preset=preset)
    for key, value in items:
        section, _, name = key.partition(".")
        if section not in SECTIONS or not name:
            raise unknown_key(key, [f"{s}.<key>" for s in SECTIONS])
        if section == "model" and name != "name":
            cfg.model.args[name] = value
            continue
        target = getattr(cfg, section)
        fields = {f.name: f for f in dataclasses.fields(target)}
        if name not in fields:
            raise unknown_key(f"{section}.{name}", fields)
        hints = typing.get_type_hints(type(target))
        setattr(target, name, coerce(key, value, hints[name], getattr(target, name)))
    return cfg


def prefer_typed_context_length(cfg: Config, typed: set[str]) -> None:
    """Make data.context_length and model.context_length, two spellings of one length, agree: the one typed on
    the command line wins over the preset's other one (names_bengio model.context_length=3 with the preset's
    data.context_length=8). Both typed and different stays an error, raised where the task builds the model."""
    model_length = cfg.model.args.get("context_length")
    if cfg.data.context_length <= 0 or model_length is None or model_length == cfg.data.context_length:
        return
    if "model.context_length" in typed and "data.context_length" not in typed:
        cfg.data.context_length = model_length
    elif "data.context_length" in typed and "model.context_length" not in typed:
        cfg.model.args["context_length"] = cfg.data.context_length


def config_yaml(cfg: Config) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(config_yaml(cfg))


def read_config_tree(path: str | Path) -> tuple[dict, str]:
    """The sections and the preset name of a config.yaml written by `save_config`; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    tree = check_tree(read_yaml(path), str(path))
    preset = tree.pop("preset", "")
    if not isinstance(preset, str):
        raise ConfigError(f"{path}: preset: expected str, got {shown(preset)} ({type(preset).__name__})")
    return tree, preset
