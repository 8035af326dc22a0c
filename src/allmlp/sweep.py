"""Hyper-parameter search (`allmlp sweep PRESET --trials N key=low:high[:log] key=a,b,c [key=value ...]`).

Optuna's TPE sampler proposes each trial's values, the median pruner stops trials whose intermediate val loss is
worse than the median of earlier trials at the same step, and every trial is an ordinary run folder
(`runs/sweep_NAME/trial_K`, loadable by eval/generate). The sweep folder gets `results.csv`, `results.json` and
`best.yaml` (the best trial's full config, a preset for `allmlp train`). `--jobs J` runs J worker processes
that share the study through an optuna journal file. This replaces the language-interpolation project's hydra +
nevergrad multirun.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

STUDY_FILE = "study.journal"


@dataclass
class SearchSpace:
    """One searched key: a numeric range (int or float, optionally log-scaled) or a list of choices."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: list | None = None

    def suggest(self, trial):
        """The optuna suggestion for this key."""
        if self.choices is not None:
            return trial.suggest_categorical(self.key, self.choices)
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, log=self.log)


def parse_spec(items: list[str]) -> tuple[list[SearchSpace], list[str]]:
    """Split `key=value` words into searched keys (`low:high[:log]`, `a,b,c`) and fixed overrides."""
    from .config import parse_value

    space, fixed = [], []
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"sweep: {item!r} must look like key=low:high[:log], key=a,b,c or key=value")
        parts = text.split(":")
        bounds = [parse_value(p) for p in parts[:2]]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bounds)
        if len(parts) in (2, 3) and numeric:  # anything else with a colon (a path) is a fixed value
            low, high = bounds
            log = len(parts) == 3
            if log and parts[2] != "log":
                raise ValueError(f"sweep: {item!r}: the third field of a range can only be 'log'")
            if low >= high:
                raise ValueError(f"sweep: {item!r}: a range needs low < high")
            if log and low <= 0:
                raise ValueError(f"sweep: {item!r}: a log range needs low > 0")
            integer = isinstance(low, int) and isinstance(high, int)
            space.append(SearchSpace(key, float(low), float(high), log, integer))
        elif "," in text and not text.startswith(("[", "{")):
            space.append(SearchSpace(key, choices=[parse_value(c) for c in text.split(",")]))
        else:
            fixed.append(item)
    if not space:
        raise ValueError("sweep: nothing to search; give at least one key=low:high or key=a,b,c")
    keys = [s.key for s in space]
    if len(set(keys)) != len(keys):
        raise ValueError(f"sweep: a key is searched twice: {', '.join(keys)}")
    return space, fixed


def trial_overrides(space: list[SearchSpace], values: dict, fixed: list[str], run_dir: Path) -> list[str]:
    """The override words of one trial: fixed ones, the sampled values, and quiet progress."""
    sampled = [f"{s.key}={values[s.key]}" for s in space]
    return [*fixed, *sampled, "train.progress=false", f"train.run_name={run_dir.name}",
            f"train.out_dir={run_dir.parent}"]


def check_space(preset: str, space: list[SearchSpace], fixed: list[str]) -> None:
    """Build the config at the range ends and every choice, so that a wrong key fails before any training."""
    from .config import ConfigError
    from .configure import build_config

    for s in space:
        for value in (s.choices if s.choices is not None else [s.low, s.high]):
            value = int(value) if s.integer else value
            try:
                build_config(preset, [*fixed, f"{s.key}={value}"])
            except ConfigError as err:
                raise ConfigError(f"sweep: {s.key} at {value}: {err}") from None


def run_trial(trial, preset: str, space: list[SearchSpace], fixed: list[str], sweep_dir: Path, metric: str,
              log: Callable[[str], None] | None = None) -> float:
    """Train one trial in this process; reports each evaluation to the pruner, and `log`s a line with its result.
    Returns the final metric."""
    import optuna

    from .checkpoint import read_metrics
    from .configure import build_config
    from .engine import run

    run_dir = sweep_dir / f"trial_{trial.number}"
    values = {s.key: s.suggest(trial) for s in space}
    cfg = build_config(preset, trial_overrides(space, values, fixed, run_dir))
    split, _, name = metric.partition("/")

    def pruning_hook(step, model, writer):
        # The engine calls hooks right after it logged the evaluation, so the last record is this step's.
        records = [r for r in read_metrics(run_dir) if r.get("split") == split and r.get("step") == step]
        if records and name in records[-1]:
            trial.report(records[-1][name], step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"{metric} {records[-1][name]:.4f} at step {step}")

    result = run(cfg, run_dir, reuse=True, prepare=lambda exp, path, fabric: exp.hooks.append(pruning_hook))
    if result["interrupted"]:  # Ctrl-C saved the trial's checkpoint; the sweep stops with it
        raise KeyboardInterrupt
    if metric not in result:
        raise ValueError(f"sweep: metric {metric!r} not among the run's results ({', '.join(result)})")
    trial.set_user_attr("run_dir", str(run_dir))
    if log is not None:
        log(f"trial {trial.number}: {metric} {result[metric]:.4f}  " + " ".join(f"{k}={v}" for k, v in values.items()))
    return float(result[metric])


def open_study(sweep_dir: Path, direction: str, seed: int, prune: bool):
    """The sweep's study, stored in a journal file that several worker processes can share."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(sweep_dir / STUDY_FILE)))
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0) if prune else optuna.pruners.NopPruner()
    return optuna.create_study(study_name="sweep", storage=storage, direction=direction, load_if_exists=True,
                               sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner)


def optimize(preset: str, items: list[str], sweep_dir: Path, trials: int, metric: str, direction: str, seed: int,
             prune: bool, log: Callable[[str], None] | None = None) -> None:
    """Run `trials` trials of the study in this process (one worker of a sweep)."""
    space, fixed = parse_spec(items)
    study = open_study(sweep_dir, direction, seed, prune)
    study.optimize(lambda t: run_trial(t, preset, space, fixed, sweep_dir, metric, log), n_trials=trials,
                   catch=(RuntimeError, FloatingPointError))


def results_table(sweep_dir: Path, metric: str, direction: str) -> list[dict]:
    """One row per trial (number, state, metric, parameters, run folder), best first; writes results.csv/.json."""
    import optuna

    study = open_study(sweep_dir, direction, 0, False)
    rows = []
    for t in study.trials:
        rows.append({"trial": t.number, "state": t.state.name.lower(),
                     metric: t.value if t.value is not None else (max(t.intermediate_values.items())[1]
                                                                  if t.intermediate_values else None),
                     "last_step": max(t.intermediate_values) if t.intermediate_values else None,
                     **t.params, "run_dir": str(sweep_dir / f"trial_{t.number}")})
    sign = 1 if direction == "minimize" else -1
    complete = optuna.trial.TrialState.COMPLETE.name.lower()
    rows.sort(key=lambda r: (r["state"] != complete, sign * r[metric] if r[metric] is not None else math.inf))
    (sweep_dir / "results.json").write_text(json.dumps(rows, indent=2))
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(sweep_dir / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def save_best(rows: list[dict], sweep_dir: Path) -> Path | None:
    """Copy the best complete trial's config as best.yaml (a preset: `allmlp train runs/sweep_X/best.yaml`)."""
    best = next((r for r in rows if r["state"] == "complete"), None)
    if best is None:
        return None
    tree = yaml.safe_load((Path(best["run_dir"]) / "config.yaml").read_text())
    tree.pop("preset", None)
    tree["train"]["run_name"] = f"{sweep_dir.name}_best"
    tree["train"]["out_dir"] = "runs"
    tree["train"]["progress"] = True
    path = sweep_dir / "best.yaml"
    path.write_text(f"# best of {len(rows)} trials of {sweep_dir.name} (trial {best['trial']})\n" +
                    yaml.safe_dump(tree, sort_keys=False))
    return path


def share(trials: int, jobs: int) -> list[int]:
    """Trials per worker, as even as possible."""
    return [trials // jobs + (1 if i < trials % jobs else 0) for i in range(jobs)]
