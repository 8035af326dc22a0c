"""`allmlp sweep PRESET --trials N key=low:high[:log] key=a,b,c [fixed key=value ...]`: hyper-parameter search.

Optuna's TPE sampler proposes each trial's values, the median pruner stops trials whose intermediate val loss is
worse than the median of earlier trials at the same step, and every trial is an ordinary run folder
(`runs/sweep_NAME/trial_K`, loadable by eval/generate). The sweep folder gets `results.csv`, `results.json` and
`best.yaml` (the best trial's full config, a preset for `allmlp train`). `--jobs J` runs J worker processes
that share the study through an optuna journal file. This replaces the seed's hydra + nevergrad multirun.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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


def run_trial(trial, preset: str, space: list[SearchSpace], fixed: list[str], sweep_dir: Path, metric: str) -> float:
    """Train one trial in this process; reports each evaluation to the pruner. Returns the final metric."""
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
    print(f"trial {trial.number}: {metric} {result[metric]:.4f}  " +
          " ".join(f"{k}={v}" for k, v in values.items()), flush=True)
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
             prune: bool) -> None:
    """Run `trials` trials of the study in this process (one worker of a sweep)."""
    space, fixed = parse_spec(items)
    study = open_study(sweep_dir, direction, seed, prune)
    study.optimize(lambda t: run_trial(t, preset, space, fixed, sweep_dir, metric), n_trials=trials,
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


def print_table(rows: list[dict], metric: str) -> None:
    """The results as a rich table, best first."""
    from rich.console import Console
    from rich.table import Table

    columns = [c for c in dict.fromkeys(k for r in rows for k in r) if c != "run_dir"]
    table = Table(*columns, title=f"sweep results ({metric})")
    for r in rows:
        table.add_row(*[f"{r.get(c):.4g}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in columns])
    Console().print(table)


def share(trials: int, jobs: int) -> list[int]:
    """Trials per worker, as even as possible."""
    return [trials // jobs + (1 if i < trials % jobs else 0) for i in range(jobs)]


EPILOG = """examples:
  allmlp sweep book_highorder --trials 20 optim.lr=1e-5:1e-2:log net.hidden.width=50:400 net.n=2,3,4 max_epochs=5
  allmlp sweep shakespeare_mixer --trials 8 --jobs 2 optim.lr=1e-4:1e-2:log train.max_steps=500
"""


def main(argv: list[str]) -> int:
    """`allmlp sweep`: parse, check the search space, run the workers, print and save the results."""
    from .configure import build_config

    parser = argparse.ArgumentParser(prog="allmlp sweep", description=__doc__.split("\n\n")[0],
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", help="preset name or YAML file")
    parser.add_argument("items", nargs="+", help="key=low:high[:log] (range), key=a,b,c (choices), key=value (fixed)")
    parser.add_argument("--trials", type=int, default=10, help="number of trials (default 10)")
    parser.add_argument("--jobs", type=int, default=1, help="trials run in parallel processes (default 1)")
    parser.add_argument("--name", help="sweep name: folder runs/sweep_NAME (default: the preset's name)")
    parser.add_argument("--metric", default="val/loss", help="what to optimise (default val/loss)")
    parser.add_argument("--direction", choices=["minimize", "maximize"], default="minimize")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed")
    parser.add_argument("--no-prune", action="store_true", help="run every trial to the end")
    parser.add_argument("--worker", type=int, default=-1, help=argparse.SUPPRESS)
    args = parser.parse_intermixed_args(argv)
    if args.trials < 1 or args.jobs < 1:
        parser.error("--trials and --jobs must be >= 1")
    space, fixed = parse_spec(args.items)
    base = build_config(args.preset, fixed)
    name = args.name or Path(args.preset).stem
    sweep_dir = Path(base.train.out_dir) / f"sweep_{name}"
    if args.worker >= 0:  # one of the --jobs processes
        optimize(args.preset, args.items, sweep_dir, args.trials, args.metric, args.direction,
                 args.seed + args.worker, not args.no_prune)
        return 0
    check_space(args.preset, space, fixed)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    print(f"sweep {sweep_dir}: {args.trials} trials, {args.jobs} job(s), searching "
          + ", ".join(s.key for s in space), flush=True)
    if args.jobs == 1:
        optimize(args.preset, args.items, sweep_dir, args.trials, args.metric, args.direction, args.seed,
                 not args.no_prune)
    else:
        threads = max(1, (os.cpu_count() or 1) // args.jobs)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        common = [args.preset, *args.items, "--metric", args.metric, "--direction", args.direction,
                  "--seed", str(args.seed), "--name", name] + (["--no-prune"] if args.no_prune else [])
        workers = [subprocess.Popen([sys.executable, "-m", "allmlp", "sweep", *common, "--trials", str(count),
                                     "--worker", str(i)], env=env)
                   for i, count in enumerate(share(args.trials, args.jobs)) if count]
        codes = [w.wait() for w in workers]
        if any(codes):
            raise RuntimeError(f"sweep: worker exit codes {codes}")
    rows = results_table(sweep_dir, args.metric, args.direction)
    print_table(rows, args.metric)
    best = save_best(rows, sweep_dir)
    print(f"results: {sweep_dir / 'results.csv'}" + (f"\nbest config: {best}  (allmlp train {best})" if best else
                                                       "\nno trial completed"))
    return 0
