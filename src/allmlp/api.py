"""Train a model built in Python with the same engine, run folder and metrics as `allmlp train`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch.nn as nn

from .config import SECTIONS, Config, ConfigError
from .configure import build_config


def _override_words(options: dict) -> list[str]:
    """`max_steps=500` or `train__max_steps=500` as `train.max_steps=500` (a bare key must name one section)."""
    words = []
    for key, value in options.items():
        if "__" in key:
            words.append(f"{key.replace('__', '.', 1)}={value}")
            continue
        homes = [name for name, section in SECTIONS.items() if name != "model"
                 and key in {f.name for f in dataclasses.fields(section)}]
        if len(homes) != 1:
            where = f"in {', '.join(homes)}" if homes else "in no config section"
            raise ConfigError(f"fit: option {key!r} is {where}; write it as section__key, e.g. train__max_steps")
        words.append(f"{homes[0]}.{key}={value}")
    return words


def fit(model: nn.Module, preset: str = "fashion_mixer", run_dir: str | Path | None = None, **options) -> dict:
    """Train `model` on the data, loss and recipe of `preset` (its model section is ignored); options are config
    keys (`max_steps=500`, `lr=1e-3`, `data__name="mnist"`). Returns the final metrics and "run_dir".

    The run folder gets weights, metrics, TensorBoard logs and a config naming the model's class; reload the
    weights with `allmlp.checkpoint.load_weights(model, run_dir / "model.safetensors")`.
    """
    from .engine import default_run_dir, run
    from .tasks import build_experiment

    cfg: Config = build_config(preset, _override_words(options))
    model_class = f"{type(model).__module__}.{type(model).__qualname__}"

    def build(config: Config):
        experiment = build_experiment(config, model)
        config.model.name, config.model.args = model_class, {}  # what config.yaml says was trained
        return experiment

    folder = run_dir or default_run_dir(cfg, f"_{type(model).__name__}")
    return run(cfg, folder, reuse=run_dir is not None, build=build)
