"""Scale-out speed on this machine: 2 DDP processes over 1, and bf16-mixed over fp32 per model family.

Run under the benchmark lock (one benchmark at a time on the shared machine):
    flock /tmp/allmlp-bench.lock .venv/bin/python benchmarks/ddp.py
Writes benchmarks/results/ddp.json. Every number is a ratio against a baseline measured in this same process.
The trainings run in fp32 (train.precision=32-true) with the engine's thread rule (train.threads=0: physical cores
/ processes, or OMP_NUM_THREADS when set); the threads each process used are recorded. benchmarks/precision.py
measures every family's bf16 / fp32 ratio and what train.precision=auto picks.
--smoke: a few steps of one process on made-up images and one family's bf16 check (the two-process DDP launch
alone takes longer than a smoke run may; tests/test_ddp.py exercises it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import add_common_arguments, family_batch, output_path, smoke_fashion, smoke_folder, write_results


def train_throughput(extra: list[str], steps: int, batch_size: int) -> tuple[float, int]:
    """Mean samples/s of `allmlp train fashion_mixer` in fp32 over logged windows after the first (warm-up), and
    the torch threads each of its processes used (the run's setup record)."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        # fp32 pinned: auto could pick another precision per thread count and mix it into the scale-out ratio
        command = [sys.executable, "-m", "allmlp", "train", "fashion_mixer", f"data.batch_size={batch_size}",
                   f"train.max_steps={steps}", f"train.log_interval={steps // 4}", "train.eval_interval=0",
                   "train.checkpoint_interval=0", "train.progress=false", "train.accelerator=cpu",
                   "train.precision=32-true", "data.eval_batch_size=2000", *extra, "--run-dir", str(run)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        speeds = [r["samples_per_sec"] for r in records if r["split"] == "train"][1:]
        threads = next(int(r["threads"]) for r in records if r["split"] == "setup")
        return sum(speeds) / len(speeds), threads


def ddp_speedup(steps: int, batch_size: int, rounds: int, data: list[str]) -> dict:
    """samples/s of 1 process (all cores), 1 process (1 thread) and 2 DDP processes (cores / 2 threads each)."""
    setups = {"one_process": [], "one_process_1_thread": ["train.threads=1"],
              "two_processes_ddp": ["train.devices=2", "train.strategy=ddp"]}
    best = {name: 0.0 for name in setups}
    threads = {}
    for _ in range(rounds):  # interleaved, best of rounds: the machine is shared
        for name, extra in setups.items():
            speed, threads[name] = train_throughput([*extra, *data], steps, batch_size)
            best[name] = max(best[name], speed)
            print(f"  {name}: {best[name]:.0f} samples/s (best so far), {threads[name]} threads per process",
                  flush=True)
    return {"samples_per_sec": best, "threads_per_process": threads,
            "speedup_2proc": best["two_processes_ddp"] / best["one_process"],
            "speedup_2proc_vs_1_thread": best["two_processes_ddp"] / best["one_process_1_thread"]}


def step_throughput(name: str, batch_size: int, bf16: bool, steps: int) -> float:
    """samples/s of forward + backward + AdamW steps, under CPU bf16 autocast or in fp32."""
    torch.manual_seed(0)
    model, x, y = family_batch(name, batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float().flatten(0, -2), y.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - start)


FAMILIES = {  # model -> (batch size, family)
    "mixer_tiny_28": (128, "vision Mixer, 28 px"),
    "mixer_tiny_32": (128, "vision Mixer, 32 px (CIFAR recipe dims differ)"),
    "resnet20": (128, "ResNet20 (convolutions)"),
    "causal_mixer": (32, "causal Mixer LM (text)"),
    "gmlp": (32, "causal gMLP LM (text)"),
    "chat_mixer": (128, "window Mixer LM (text)"),
}


def bf16_vs_fp32(steps: int, rounds: int, families: dict) -> dict:
    """bf16-mixed / fp32 training throughput for each registered family present here."""
    from allmlp.models import list_models

    out = {}
    for name, (batch_size, family) in families.items():
        if name not in list_models():
            continue
        fp32 = bf16 = 0.0
        for _ in range(rounds):
            fp32 = max(fp32, step_throughput(name, batch_size, False, steps))
            bf16 = max(bf16, step_throughput(name, batch_size, True, steps))
        out[name] = {"family": family, "batch_size": batch_size, "fp32_samples_per_sec": round(fp32, 1),
                     "bf16_samples_per_sec": round(bf16, 1), "bf16_over_fp32": round(bf16 / fp32, 3)}
        print(f"  {name}: fp32 {fp32:.0f}, bf16 {bf16:.0f} samples/s -> x{bf16 / fp32:.2f}", flush=True)
    return out


def main() -> None:
    """Measure and write benchmarks/results/ddp.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=80, help="training steps per DDP measurement")
    parser.add_argument("--batch-size", type=int, default=256, help="global batch of the DDP measurement")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions; the best is kept")
    parser.add_argument("--precision-steps", type=int, default=8, help="timed steps per bf16/fp32 measurement")
    add_common_arguments(parser, "ddp")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    families, result = FAMILIES, {}
    if args.smoke:
        args.steps, args.batch_size, args.rounds, args.precision_steps = 4, 32, 1, 1
        families = {"mixer_tiny_28": (8, FAMILIES["mixer_tiny_28"][1])}
        data = [f"data.path={smoke_fashion(smoke_folder('ddp'))}", "data.val_size=0"]
        speed, threads = train_throughput(data, args.steps, args.batch_size)
        result.update(samples_per_sec={"one_process": speed}, threads_per_process={"one_process": threads})
    else:
        print("DDP: fashion_mixer on Fashion-MNIST", flush=True)
        result.update(ddp_speedup(args.steps, args.batch_size, args.rounds, ["data.val_size=0"]))
    print("bf16-mixed vs fp32 (CPU autocast)", flush=True)
    result.update({
        "ddp_setup": {"model": "mixer_tiny_28 (fashion_mixer preset, no val split)", "global_batch": args.batch_size,
                      "steps": args.steps, "backend": "gloo", "rounds": args.rounds},
        "bf16_vs_fp32": bf16_vs_fp32(args.precision_steps, args.rounds, families),
        "protocol": "best of interleaved rounds; ratios only mean something within this run"})
    write_results(output_path(args, "ddp"), args, [0], result)


if __name__ == "__main__":
    main()
