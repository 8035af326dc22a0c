"""What every benchmark shares: the record of how a result was made, the whole-file write, seeds and --smoke data.

A results file is written only here, whole, by the script that measured it: the exact command line, the git commit
(and whether the tree had uncommitted changes), the UTC date, the machine (CPU model, cores, torch threads and
version), the seeds and a free-text --note sit next to the numbers. `--smoke` runs a benchmark in seconds on tiny
synthetic data and writes under a temporary folder unless --out is given, never over benchmarks/results.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from allmlp.machine import bf16_features, cpu_model, physical_cores

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
REQUIRED_KEYS = ("command", "git_commit", "git_dirty", "date_utc", "finished_utc", "machine", "seeds", "note",
                 "smoke")
MACHINE_KEYS = ("cpu_model", "cores", "torch_threads", "torch_version", "python")


def add_common_arguments(parser: argparse.ArgumentParser, name: str, seeds: bool = False) -> None:
    """--out, --note and --smoke (and --seeds when the benchmark repeats its runs)."""
    parser.add_argument("--out", default="", help=f"results file (default: benchmarks/results/{name}.json; "
                                                  "with --smoke a temporary folder)")
    parser.add_argument("--note", default="", help="free text stored in the results file (how the run was made)")
    parser.add_argument("--smoke", action="store_true",
                        help="a seconds-long run on tiny synthetic data, to check the script and its output")
    if seeds:
        parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                            help="training seeds (default 0 1 2); results give mean and spread")


def smoke_folder(name: str) -> Path:
    """The temporary folder of a --smoke run (data, run folders, results)."""
    folder = Path(tempfile.gettempdir()) / "allmlp-smoke" / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def output_path(args: argparse.Namespace, name: str) -> Path:
    """Where the results file goes: --out, else results/NAME.json (or the smoke folder for --smoke)."""
    if args.out:
        return Path(args.out)
    return smoke_folder(name) / f"{name}.json" if args.smoke else RESULTS / f"{name}.json"


def runs_folder(args: argparse.Namespace, name: str) -> Path:
    """Where the benchmark's run folders go: runs/bench, or the smoke folder."""
    return smoke_folder(name) / "runs" if args.smoke else Path("runs/bench")


def _git(*command: str) -> str:
    try:
        return subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict:
    """CPU model and bf16 features, cores (logical and physical), torch threads, torch and Python versions."""
    return {"cpu_model": cpu_model(), "bf16_features": bf16_features(), "cores": os.cpu_count(),
            "physical_cores": physical_cores(),
            "torch_threads": torch.get_num_threads(),
            "torch_version": torch.__version__, "python": platform.python_version()}


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# The code that runs is the code at the start: later commits or edits during a long run must not be credited.
STARTED = {"git_commit": _git("rev-parse", "HEAD") or "unknown",
           "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results")),
           "date_utc": _utc_now()}  # results written by earlier benchmarks of this checkout are outputs, not code


def provenance(args: argparse.Namespace, seeds: list[int]) -> dict:
    """The record of how a results file was made (command, commit and date at the start, machine, seeds, note)."""
    return {"command": shlex.join(["python", *sys.argv]), **STARTED, "finished_utc": _utc_now(),
            "machine": machine(), "seeds": list(seeds), "note": args.note, "smoke": bool(args.smoke)}


def write_results(path: Path, args: argparse.Namespace, seeds: list[int], results: dict) -> Path:
    """Write provenance + results as one JSON file, whole (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({**provenance(args, seeds), **results}, indent=2) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path}", flush=True)
    return path


def train(cfg, run_dir: Path, build=None, prepare=None) -> tuple:
    """Train `cfg` into `run_dir` through `allmlp.engine.run`, the run path of `allmlp train` (processes, seed,
    experiment, fit, shutdown); returns (experiment, result with "build_seconds", the time `build(cfg)` took: a
    count model's fit, and "precision", what the run trained in: auto's choice as config.yaml records it).
    `prepare(exp)` runs between building and fitting."""
    from allmlp.configure import load_config
    from allmlp.engine import run
    from allmlp.tasks import build_experiment

    built, seconds = [], []

    def timed_build(config):
        start = time.perf_counter()
        built.append((build or build_experiment)(config))
        seconds.append(time.perf_counter() - start)
        return built[-1]

    result = run(cfg, run_dir, reuse=True, build=timed_build,
                 prepare=None if prepare is None else lambda exp, path, fabric: prepare(exp))
    recorded = load_config(Path(run_dir) / "config.yaml").train
    return built[0], {**result, "build_seconds": seconds[0],
                      "precision": recorded.precision_chosen or recorded.precision}


def save_line_plot(fig, ax, path: Path, title: str, legend_fontsize: float | None = None) -> Path:
    """Title, grid and legend on `ax`, then the figure written to `path` and closed."""
    import matplotlib.pyplot as plt

    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_fontsize)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def spread(values: list[float]) -> dict:
    """Mean, sample standard deviation (0 for one value), min, max and the values, rounded to 4 places."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.fmean(values), 4), "std": round(std, 4), "min": round(min(values), 4),
            "max": round(max(values), 4), "values": [round(v, 4) for v in values]}


def family_batch(name: str, batch_size: int, vocab_size: int = 84):
    """A registered model with default arguments and a random batch (inputs, targets) of its task's shapes."""
    from allmlp.models import create_model, model_info

    if model_info(name)["task"] == "image":
        model = create_model(name)
        chans, height, width = model_info(name)["input_size"]
        return model, torch.randn(batch_size, chans, height, width), torch.randint(0, 10, (batch_size,))
    model = create_model(name, vocab_size=vocab_size)
    x = torch.randint(0, vocab_size, (batch_size, model.context_length))  # (B, T)
    causal = getattr(model, "lm_kind", "window") == "causal"
    return model, x, torch.randint(0, vocab_size, x.shape if causal else (batch_size,))


def smoke_names(folder: Path, count: int = 400) -> Path:
    """A file of `count` made-up lowercase names (syllables from a fixed seed), one per line."""
    rng = random.Random(0)
    syllables = ["an", "el", "ma", "ri", "so", "ja", "ke", "li", "na", "to", "ber", "ly", "dan", "mi"]
    names = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(count)]
    path = folder / "names.txt"
    path.write_text("\n".join(names) + "\n")
    return path


def smoke_text(folder: Path, chars: int = 20_000) -> Path:
    """Running text of about `chars` chars: random words over a small vocabulary, with punctuation and lines."""
    rng = random.Random(0)
    words = ["to", "be", "or", "not", "that", "is", "the", "question", "whether", "tis", "nobler", "in", "mind",
             "ROMEO:", "JULIET:", "love", "and", "night", "day", "sweet"]
    parts, size = [], 0
    while size < chars:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(3, 9))) + rng.choice([".", ",", "!", "?"])
        parts.append(line)
        size += len(line) + 1
    path = folder / "text.txt"
    path.write_text("\n".join(parts) + "\n")
    return path


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def smoke_fashion(folder: Path, train: int = 256, test: int = 128) -> Path:
    """A folder of Fashion-MNIST-named IDX files: 28x28 images whose class (0..9) is the row of a bright bar."""
    folder = folder / "fashion"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 28, 28))
        for i, label in enumerate(labels):
            images[i, int(label) * 2 + 4:int(label) * 2 + 6, 6:22] += 180
        _write_idx(folder / f"{split}-images-idx3-ubyte", images.clip(0, 255))
        _write_idx(folder / f"{split}-labels-idx1-ubyte", labels)
    return folder
