"""`allmlp sweep PRESET --trials N key=low:high[:log] key=a,b,c [key=value ...]`: hyper-parameter search."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from .common import parser as common_parser


def say(line: str) -> None:
    """Print a line at once (the workers of --jobs share the terminal)."""
    print(line, flush=True)


def print_table(rows: list[dict], metric: str) -> None:
    """The results as a rich table, best first."""
    from rich.console import Console
    from rich.table import Table

    columns = [c for c in dict.fromkeys(k for r in rows for k in r) if c != "run_dir"]
    table = Table(*columns, title=f"sweep results ({metric})")
    for r in rows:
        table.add_row(*[f"{r.get(c):.4g}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in columns])
    Console().print(table)


EPILOG = """examples:
  allmlp sweep book_highorder --trials 20 optim.lr=1e-5:1e-2:log net.hidden.width=50:400 net.n=2,3,4 max_epochs=5
  allmlp sweep shakespeare_mixer --trials 8 --jobs 2 optim.lr=1e-4:1e-2:log train.max_steps=500
"""


def main(argv: list[str]) -> int:
    """Parse, check the search space, run the workers, print and save the results."""
    from .. import sweep
    from ..configure import build_config
    from ..sweep import check_space, optimize, parse_spec, results_table, save_best, share

    parser = common_parser("sweep", sweep.__doc__.split("\n\n")[0], EPILOG)
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
                 args.seed + args.worker, not args.no_prune, log=say)
        return 0
    check_space(args.preset, space, fixed)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    print(f"sweep {sweep_dir}: {args.trials} trials, {args.jobs} job(s), searching "
          + ", ".join(s.key for s in space), flush=True)
    if args.jobs == 1:
        optimize(args.preset, args.items, sweep_dir, args.trials, args.metric, args.direction, args.seed,
                 not args.no_prune, log=say)
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
