"""A run's config from a preset and `section.key=value` words: spellings of the reference projects rewritten
(compat), sections typed and checked (config), model arguments checked against the model registry (models)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import compat
from .config import (Config, ConfigError, check_tree, config_from_items, flatten, load_preset, parse_overrides,
                     prefer_typed_context_length, read_config_tree, validate)
from .models import check_model_args


def build_config(preset: str | dict | None = None, overrides: list[str] | dict | None = None) -> Config:
    """Resolve a preset (a name, a YAML file or a mapping) plus overrides into a validated Config; errors name
    the offending key."""
    tree = load_preset(preset) if isinstance(preset, str) else check_tree(preset or {}, "config")
    preset_items = compat.canonical(flatten(tree))
    override_items = compat.canonical(parse_overrides(overrides))
    cfg = config_from_items(preset_items + override_items, preset if isinstance(preset, str) else "")
    cfg.model.args = check_model_args(cfg.model.name, cfg.model.args, _inherited(preset_items, override_items,
                                                                                cfg.model.name))
    prefer_typed_context_length(cfg, {key for key, _ in override_items})
    return validate(cfg)


def _inherited(preset_items: list[tuple[str, Any]], override_items: list[tuple[str, Any]], model: str) -> set[str]:
    """The preset's own model arguments when an override swapped its model (`fashion_mixer
    model.name=mlp_classifier`): the new model may not take them."""
    names = [value for key, value in preset_items if key == "model.name"]
    if str(names[-1] if names else model) == model:
        return set()
    typed = {key for key, _ in override_items}
    return {key.partition(".")[2] for key, _ in preset_items
            if key.startswith("model.") and key != "model.name" and key not in typed}


def load_config(path: str | Path) -> Config:
    """Read a config.yaml written by `save_config` (or by an older allmlp) back into a Config; errors name the
    file."""
    tree, preset = read_config_tree(path)
    try:
        cfg = build_config(tree)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    cfg.preset = preset
    return cfg
