"""A corpus larger than memory trains like a small one: peak RSS and tokens/s of 1,000 steps on >= 1 GB and on 1 MB.

    flock /tmp/allmlp-bench.lock .venv/bin/python benchmarks/bigdata.py [--big-mb 1024] [--steps 1000]

Both corpora are built in the cache folder (`<cache>/bigdata/`) from the cached Shakespeare and names corpora: their
lines, shuffled with a new seed for every block and written block after block until the file reaches its size
(the big one >= --big-mb MiB, the small one --small-mb MiB, cut at a line end). Each is prepared once with
`allmlp data prepare` (token files in the cache), then a small causal Mixer trains --steps steps on it with
`data.prepared=true`, each training in its own subprocess: its peak resident memory (VmHWM, read by the training
process at its end) and its training tokens per second (targets per step x steps / training seconds, evaluation
excluded) are what the two corpora are compared on (with --repeats, trainings alternate between the corpora:
median tokens/s, highest RSS). Writes benchmarks/results/bigdata.json {"corpus_bytes": {"big", "small"},
"peak_rss_mb": {...}, "tokens_per_s": {...}, ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import add_common_arguments, output_path, smoke_folder, smoke_names, smoke_text, train, write_results

from allmlp.config import load_preset

from allmlp.configure import build_config
from allmlp.data.cache import cache_dir
from allmlp.data.prepared import prepare
from allmlp.data.text import fetch_corpus

MODEL = {"name": "causal_mixer", "embedding_dim": 64, "depth": 2, "channels_mlp_dim": 256, "num_heads": 4}
TRAIN = ["data.context_length=64", "data.batch_size=32", "train.eval_interval=0", "train.checkpoint_interval=0",
         "train.progress=false", "data.eval_targets=4096", "data.prepared=true"]


def base_lines(smoke: bool) -> list[str]:
    """The lines the corpora are made of: Shakespeare's and the names' (smoke: the synthetic smoke texts)."""
    if smoke:
        folder = smoke_folder("bigdata")
        sources = [smoke_text(folder), smoke_names(folder)]
    else:
        sources = [fetch_corpus("shakespeare"), fetch_corpus("names")]
    return [line for path in sources for line in Path(path).read_text(encoding="utf-8").split("\n")]


def build_corpus(path: Path, lines: list[str], size: int) -> int:
    """Write blocks of the lines, each block shuffled with its own seed, until `size` bytes (cut at a line end)."""
    stamp = path.with_suffix(".json")
    recipe = {"size": size, "lines": len(lines), "rule": "blocks of all lines, block b shuffled with Random(b)"}
    if path.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == recipe:
        return path.stat().st_size
    tmp = path.with_name(f".{path.name}.part")
    written, block = 0, 0
    with open(tmp, "wb") as out:
        while written < size:
            shuffled = lines[:]
            random.Random(block).shuffle(shuffled)
            data = ("\n".join(shuffled) + "\n").encode("utf-8")
            if written + len(data) > size:  # the last block: cut after the first line end past `size`
                data = data[:data.index(b"\n", size - written) + 1]
            out.write(data)
            written += len(data)
            block += 1
    os.replace(tmp, path)
    stamp.write_text(json.dumps(recipe))
    return path.stat().st_size


def data_overrides(corpus: Path) -> list[str]:
    return ["data.name=text", f"data.path={corpus}"]


def train_child(corpus: Path, steps: int) -> None:
    """(In a subprocess) train `steps` steps on the prepared corpus; print the steps, seconds and tokens/s as JSON."""
    cfg = build_config({**load_preset("shakespeare_mixer"), "model": MODEL},
                       [*TRAIN, *data_overrides(corpus), f"train.max_steps={steps}"])
    exp, result = train(cfg, Path(os.environ["BIGDATA_RUN_DIR"]))
    tokens = exp.samples_per_batch * result["step"]
    hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
    print(json.dumps({"steps": result["step"], "train_seconds": result["train_seconds"],
                      "tokens_per_s": tokens / result["train_seconds"], "val_loss": result.get("val/loss"),
                      "vm_hwm_kb": int(hwm.split()[1])}), flush=True)


def measure(corpus: Path, steps: int, run_dir: Path) -> dict:
    """Run one training in a subprocess: its JSON line, with its own peak RSS in MB (VmHWM at its end).

    Not the child's ru_maxrss: Linux counts the parent's resident memory at the fork into it."""
    env = {**os.environ, "BIGDATA_RUN_DIR": str(run_dir)}
    done = subprocess.run([sys.executable, __file__, "--child", str(corpus), "--steps", str(steps)],
                          stdout=subprocess.PIPE, env=env, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"training on {corpus} failed (exit {done.returncode})")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = result.pop("vm_hwm_kb") / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big-mb", type=float, default=1024, help="size of the big corpus in MiB (default 1024)")
    parser.add_argument("--small-mb", type=float, default=1, help="size of the small corpus in MiB (default 1)")
    parser.add_argument("--steps", type=int, default=1000, help="training steps on each corpus (default 1000)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="trainings per corpus, interleaved (tokens/s: the median; peak RSS: the highest)")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    add_common_arguments(parser, "bigdata")
    args = parser.parse_args()
    if args.child:
        return train_child(Path(args.child), args.steps)
    if args.smoke:  # tiny corpora, and their token files in the smoke folder rather than the user's cache
        args.big_mb, args.small_mb, args.steps = 2, 0.1, 20
        os.environ["ALLMLP_CACHE"] = str(smoke_folder("bigdata") / "cache")
    folder = (smoke_folder("bigdata") if args.smoke else cache_dir()) / "bigdata"
    folder.mkdir(parents=True, exist_ok=True)
    lines = base_lines(args.smoke)
    results: dict = {"corpus_bytes": {}, "peak_rss_mb": {}, "tokens_per_s": {}, "prepare_seconds": {},
                     "train_seconds": {}, "steps": args.steps, "model": MODEL, "overrides": TRAIN}
    corpora = {}
    for name, mib in (("small", args.small_mb), ("big", args.big_mb)):
        corpora[name] = folder / f"{name}.txt"
        results["corpus_bytes"][name] = build_corpus(corpora[name], lines, int(mib * 2**20))
        start = time.perf_counter()
        prepare(build_config({"data": {"name": "text", "path": str(corpora[name])}}).data)
        results["prepare_seconds"][name] = round(time.perf_counter() - start, 1)
        print(f"== {name}: {results['corpus_bytes'][name]:,} bytes, prepared in {results['prepare_seconds'][name]} s",
              flush=True)
    runs: dict[str, list[dict]] = {"small": [], "big": []}
    for repeat in range(args.repeats):  # interleaved, so that a neighbour's load falls on both alike
        for name, corpus in corpora.items():
            print(f"== training {args.steps} steps on {name} ({repeat + 1}/{args.repeats})", flush=True)
            runs[name].append(measure(corpus, args.steps, folder / "runs" / name))
            print(json.dumps({name: runs[name][-1]}), flush=True)
    for name, measured in runs.items():
        results["peak_rss_mb"][name] = round(max(m["peak_rss_mb"] for m in measured), 1)
        results["tokens_per_s"][name] = round(statistics.median(m["tokens_per_s"] for m in measured))
        results["train_seconds"][name] = [round(m["train_seconds"], 1) for m in measured]
    results["runs"] = runs
    rss, speed = results["peak_rss_mb"], results["tokens_per_s"]
    results.update({
        "rss_difference_mb": round(rss["big"] - rss["small"], 1),
        "tokens_per_s_ratio_big_over_small": round(speed["big"] / speed["small"], 3),
        "corpus": "Shakespeare (5.06 MB) and names lines, repeated in blocks, each block shuffled by lines with its "
                  "own seed; the small corpus is the first --small-mb MiB of the same construction",
        "protocol": "each training in its own subprocess (peak RSS = that process's VmHWM at its end); both corpora "
                    "prepared as uint8 token files and read with data.prepared=true; tokens/s over the training "
                    "steps only"})
    write_results(output_path(args, "bigdata"), args, [0], results)


if __name__ == "__main__":
    main()
