"""Tasks turn a config into an Experiment (model, loss, batches, evaluation) for the engine."""

from __future__ import annotations

import importlib

from ..config import Config
from ..experiment import Experiment
from ..models import model_info

# Registered model task -> module with build(cfg) -> Experiment and evaluate_run(run_dir, ...) -> dict.
TASK_MODULES = {"image": "allmlp.tasks.classification", "text": "allmlp.tasks.language",
                "gbm": "allmlp.tasks.gbm",  # LightGBM: language data and metrics, boosting rounds as steps
                "ngram": "allmlp.tasks.ngram"}  # Kneser-Ney counts: fitted when built, language data and metrics


def task_module(cfg: Config):
    """The task module that handles the config's model."""
    return importlib.import_module(TASK_MODULES[model_info(cfg.model.name)["task"]])


def build_experiment(cfg: Config, model=None) -> Experiment:
    """Data, model and loss for `cfg`; fills data-derived model arguments (classes, image size) into cfg.
    `model` replaces the config's model by a module built in Python (image and text tasks)."""
    return task_module(cfg).build(cfg) if model is None else task_module(cfg).build(cfg, model)
