"""Model registry: every model is created by name, so the CLI, tests and docs see them all."""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
import types
from typing import Callable

import torch.nn as nn

from ..config import ConfigError, coerce, unknown_key

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_INFO: dict[str, dict] = {}
_loaded = False


def register_model(name: str | None = None, *, task: str = "image", input_size=None):
    """Decorator: register a model factory under `name` (default: the function's name)."""

    def wrap(fn):
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is registered twice")
        _REGISTRY[key] = fn
        _INFO[key] = {"task": task, "input_size": input_size}
        return fn

    return wrap


def _load_all() -> None:
    """Import every module of this package once: importing a model file registers its models."""
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
            importlib.import_module(mod.name)


def list_models(task: str | None = None) -> list[str]:
    """Names of all registered models (optionally only those of one task: image, text or gbm)."""
    _load_all()
    return sorted(k for k in _REGISTRY if task is None or _INFO[k]["task"] == task)


def model_info(name: str) -> dict:
    """Task and nominal input size of a registered model."""
    _check_name(name)
    return dict(_INFO[name])


def model_factory(name: str) -> Callable[..., nn.Module]:
    """The registered factory function for `name`."""
    _check_name(name)
    return _REGISTRY[name]


def model_kwargs(name: str) -> dict[str, inspect.Parameter]:
    """Keyword arguments the factory of `name` accepts (used to validate config keys)."""
    sig = inspect.signature(model_factory(name))
    return {k: p for k, p in sig.parameters.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model `name` with keyword overrides."""
    factory = model_factory(name)
    valid = model_kwargs(name)
    for key in kwargs:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; valid: {', '.join(valid)}"
            raise TypeError(f"model {name!r} has no argument {key!r}{hint}")
    return factory(**kwargs)


def check_model_args(name: str, args: dict, inherited: set[str] = frozenset()) -> dict:
    """`args` checked against the factory of `name` (keys, and types from its signature and defaults); `inherited`
    args that `name` does not take are dropped (a preset's keys for the model that an override replaced)."""
    if "." in name and not args:  # a module.Class trained through allmlp.fit: nothing registered to check
        return {}
    try:
        params = model_kwargs(name)
    except KeyError as err:
        raise ConfigError(f"model.name: {err.args[0]}") from None
    out = {}
    for key, value in args.items():
        if key not in params:
            if key in inherited:
                continue
            raise unknown_key(f"model.{key}", params)
        default, annotation = params[key].default, params[key].annotation
        if isinstance(annotation, str) or annotation is params[key].empty or isinstance(annotation, types.UnionType):
            annotation = type(default) if default is not params[key].empty else object
        out[key] = coerce(f"model.{key}", value, annotation, default)
    return out


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _check_name(name: str) -> None:
    _load_all()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `allmlp models`"
        raise KeyError(f"unknown model {name!r}{hint}")
