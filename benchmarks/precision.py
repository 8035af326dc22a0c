"""bf16-mixed against fp32 for every model family, what `train.precision=auto` picks, and equal-time quality.

Run under the benchmark lock (one benchmark at a time on the shared machine):
    flock /tmp/allmlp-bench.lock .venv/bin/python benchmarks/precision.py [--seconds 120] [--skip-equal-time]
Writes benchmarks/results/precision_CPU.json, one file per kind of machine (CPU: the processor's first two words,
e.g. precision_amd_epyc.json, precision_intel_xeon.json), since the answer differs between CPUs:
- families: training samples/s of each family (forward, loss, backward, AdamW step through the same code path as
  the engine's precision plugins) in fp32 and bf16-mixed, measured in interleaved rounds in this one process; the
  ratio; and what auto's own probe (precision.run_probe, the one a run makes) chose, with its cost in seconds.
  `auto_vs_best` is the chosen setting's samples/s over the faster one's (the target: >= 0.95 for every family).
- equal_time: the causal Mixer on Shakespeare and the Fashion-MNIST Mixer trained for the same wall-clock seconds
  in fp32 and under auto (auto's budget is cut by a fresh probe's cost, so a cold-cache probe is paid for), in
  interleaved repeats (fp32, auto, auto, fp32); the median val metric of each and every run's figure.
--smoke: two small families, one round, and a few seconds of equal-time training on made-up data.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import (add_common_arguments, family_batch, output_path, smoke_fashion, smoke_folder, smoke_text,
                    write_results)

from allmlp import precision
from allmlp.machine import cpu_model, torch_threads
from allmlp.tasks.language import lm_loss

FAMILIES = {  # model -> (batch size, family): the families of benchmarks/ddp.py, a Bengio MLP and a high-order net
    "mixer_tiny_28": (128, "vision Mixer, 28 px"),
    "mixer_tiny_32": (128, "vision Mixer, 32 px"),
    "resnet20": (128, "ResNet20 (convolutions)"),
    "causal_mixer": (32, "causal Mixer LM (text)"),
    "gmlp": (32, "causal gMLP LM (text)"),
    "chat_mixer": (128, "window Mixer LM (text)"),
    "bengio": (256, "Bengio char MLP (text)"),
    "ho_small": (256, "high-order piecewise-polynomial MLP (text)"),
}
SMOKE_FAMILIES = {"mixer_tiny_28": (8, FAMILIES["mixer_tiny_28"][1]), "bengio": (32, FAMILIES["bengio"][1])}

EQUAL_TIME = {  # name -> (preset, metric, smoke data override)
    "causal_mixer_shakespeare": ("shakespeare_mixer", "val/loss", "text"),
    "fashion_mnist_mixer": ("fashion_mixer", "val/acc", "fashion"),
}


def machine_slug() -> str:
    """The processor's first two words, lower case, without trademarks: "Intel(R) Xeon(R) Processor" -> intel_xeon."""
    words = re.sub(r"\(.*?\)", " ", cpu_model()).lower().split()
    return "_".join(re.sub(r"[^a-z0-9]", "", word) for word in words[:2]) or "cpu"


def family_timer(name: str, batch_size: int) -> tuple[precision.StepTimer, int]:
    """A step timer for the family's model on a random batch of its shapes, and the samples per step."""
    torch.manual_seed(0)
    model, x, y = family_batch(name, batch_size)
    image = x.is_floating_point()

    def loss_fn(wrapped, batch):
        inputs, targets = batch
        logits = wrapped(inputs)
        return (F.cross_entropy(logits, targets) if image else lm_loss(logits, targets)), {}

    timer = precision.StepTimer(model, loss_fn, (x, y), lambda m: torch.optim.AdamW(m.parameters(), lr=1e-4))
    return timer, batch_size


def samples_per_sec(timer: precision.StepTimer, which: str, steps: int, batch_size: int) -> float:
    """samples/s over `steps` consecutive training steps in `which` (precision.FP32 or precision.BF16)."""
    start = time.perf_counter()
    for _ in range(steps):
        timer.step(which)
    return steps * batch_size / (time.perf_counter() - start)


def compare_families(families: dict, rounds: int, steps: int) -> tuple[dict, dict]:
    """Per family: fp32 and bf16 samples/s (median of interleaved rounds), ratio, auto's choice; probe seconds."""
    out, probe_seconds = {}, {}
    for name, (batch_size, family) in families.items():
        timer, samples = family_timer(name, batch_size)
        for which in (precision.FP32, precision.BF16):  # warm-up: kernels picked, memory allocated
            timer.step(which)
        speeds: dict[str, list[float]] = {precision.FP32: [], precision.BF16: []}
        for round_number in range(rounds):
            order = (precision.FP32, precision.BF16) if round_number % 2 == 0 else (precision.BF16, precision.FP32)
            for which in order:
                speeds[which].append(samples_per_sec(timer, which, steps, samples))
        fp32, bf16 = (statistics.median(speeds[w]) for w in (precision.FP32, precision.BF16))
        probe = precision.run_probe(family_timer(name, batch_size)[0])  # a fresh copy, as a run's probe has
        chosen = precision.choice_from_probe(probe).precision
        auto = bf16 if chosen == precision.BF16 else fp32
        out[name] = {"family": family, "batch_size": batch_size, "fp32": round(fp32, 1), "bf16": round(bf16, 1),
                     "ratio": round(bf16 / fp32, 3), "auto": chosen, "probe_ratio": round(probe.ratio, 3),
                     "auto_vs_best": round(auto / max(fp32, bf16), 3)}
        probe_seconds[name] = round(probe.seconds, 2)
        print(f"  {name}: fp32 {fp32:.0f}, bf16 {bf16:.0f} samples/s (x{bf16 / fp32:.2f}); auto: {chosen} "
              f"(probe x{probe.ratio:.2f}, {probe.seconds:.1f} s)", flush=True)
    return out, probe_seconds


def train_for(preset: str, seconds: float, metric: str, extra: list[str]) -> dict:
    """`allmlp train PRESET` for `seconds` of training: the val metric reached, the steps and the precision used."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        command = [sys.executable, "-m", "allmlp", "train", preset, f"train.max_minutes={seconds / 60}",
                   "train.max_steps=10000000", "train.eval_interval=0", "train.checkpoint_interval=0",
                   "train.progress=false", *extra, "--run-dir", str(run)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds * 4 + 600)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        split, name = metric.split("/")
        final = [r for r in records if r["split"] == split and name in r][-1]
        header = next(line for line in done.stdout.splitlines() if line.startswith("precision: "))
        chosen = header[len("precision: "):].split("  torch threads:")[0]  # e.g. "bf16-mixed (auto: ...)"
        return {"val": round(final[name], 4), "steps": final["step"], "precision": chosen}


def probe_cost(preset: str, extra: list[str]) -> float:
    """Seconds of a fresh probe (no cache) on the preset's own model and first batch."""
    from allmlp.configure import build_config
    from allmlp.engine import build_optimizer
    from allmlp.tasks import build_experiment

    cfg = build_config(preset, extra)
    exp = build_experiment(cfg)
    start = time.perf_counter()
    timer = precision.StepTimer(exp.model, exp.loss_fn, exp.train_batches.batch(0),
                                lambda model: build_optimizer(cfg.optim, model))
    precision.run_probe(timer)
    return time.perf_counter() - start


def equal_time(seconds: float, repeats: int, smoke_data: dict[str, list[str]]) -> dict:
    """For each EQUAL_TIME model: the val metric after `seconds` in fp32 and under auto (minus a probe's cost),
    in `repeats` pairs run as fp32, auto, auto, fp32, ... so a drift in the machine's speed hits both alike."""
    out = {}
    for name, (preset, metric, data_kind) in EQUAL_TIME.items():
        extra = smoke_data.get(data_kind, [])
        cost = probe_cost(preset, extra)
        runs: dict[str, list[dict]] = {"fp32": [], "auto": []}
        for pair in range(repeats):
            for which in (("fp32", "auto") if pair % 2 == 0 else ("auto", "fp32")):
                budget, setting = (seconds, "32-true") if which == "fp32" else (max(seconds - cost, 1.0), "auto")
                runs[which].append(train_for(preset, budget, metric, [f"train.precision={setting}", *extra]))
        fp32_val, auto_val = (statistics.median(r["val"] for r in runs[w]) for w in ("fp32", "auto"))
        out[name] = {"preset": preset, "metric": metric, "seconds": seconds, "repeats": repeats,
                     "fp32_val": round(fp32_val, 4), "auto_val": round(auto_val, 4),
                     "fp32_vals": [r["val"] for r in runs["fp32"]], "auto_vals": [r["val"] for r in runs["auto"]],
                     "fp32_steps": [r["steps"] for r in runs["fp32"]], "auto_steps": [r["steps"] for r in runs["auto"]],
                     "auto_precision": runs["auto"][0]["precision"], "probe_seconds": round(cost, 2)}
        print(f"  {name}: {metric} fp32 {out[name]['fp32_vals']} ({out[name]['fp32_steps']} steps), auto "
              f"{out[name]['auto_vals']} ({out[name]['auto_steps']} steps, {runs['auto'][0]['precision']})",
              flush=True)
    return out


def main() -> None:
    """Measure and write benchmarks/results/precision_CPU.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved fp32 / bf16 rounds per family")
    parser.add_argument("--steps", type=int, default=6, help="timed training steps per round and precision")
    parser.add_argument("--seconds", type=float, default=120, help="equal-time budget per training (default 120)")
    parser.add_argument("--repeats", type=int, default=2, help="equal-time trainings per precision (interleaved)")
    parser.add_argument("--skip-equal-time", action="store_true", help="only the families' speeds")
    add_common_arguments(parser, "precision")
    args = parser.parse_args()
    families, smoke_data = FAMILIES, {}
    if args.smoke:
        args.rounds, args.steps, args.seconds, args.repeats = 1, 2, min(args.seconds, 3.0), 1
        families = SMOKE_FAMILIES
        folder = smoke_folder("precision")
        smoke_data = {"fashion": [f"data.path={smoke_fashion(folder)}", "data.val_size=32"],
                      "text": ["data.name=text", f"data.path={smoke_text(folder)}"]}
    threads, why = torch_threads(0)  # what a run on this machine gets by default
    torch.set_num_threads(threads)
    print(f"bf16-mixed vs fp32, {threads} torch threads ({why})", flush=True)
    result, probe_seconds = compare_families(families, args.rounds, args.steps)
    results = {"families": result, "probe_seconds": probe_seconds,
               "auto_within_5_percent_of_best": all(r["auto_vs_best"] >= 0.95 for r in result.values()),
               "protocol": f"median of {args.rounds} interleaved rounds of {args.steps} steps per precision, in "
                           "one process; the ratio only means something within this run"}
    if not args.skip_equal_time:
        print(f"equal time: {args.seconds:.0f} s of training, fp32 against auto", flush=True)
        results["equal_time"] = equal_time(args.seconds, args.repeats, smoke_data)
    write_results(output_path(args, f"precision_{machine_slug()}"), args, [0], results)


if __name__ == "__main__":
    main()
