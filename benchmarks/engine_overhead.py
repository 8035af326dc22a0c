"""What the engine costs: the same model, batches and optimizer through `allmlp.engine.run` and a bare PyTorch loop.

    python benchmarks/engine_overhead.py [--preset fashion_mixer] [--steps 500] [--checkpoint-interval 500]

Both loops run in this process, alternating (bare, engine, bare, engine, ...), on synthetic images of the preset's
shape; each side's fastest round is compared (a shared machine only ever slows a round down). The engine's time is
the whole `fit` call: setup, progress bar, metrics, TensorBoard and its checkpoints (every --checkpoint-interval
steps and at the end, each an atomic safetensors trainer state holding weights, optimizer and RNG).
Also times one checkpoint (save and resume load) of Mixer-B/16 (59.9M parameters, AdamW state).
Writes benchmarks/results/engine_overhead.json with {"ratio"}: engine seconds / bare seconds (target <= 1.05).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from common import add_common_arguments, output_path, train, write_results

from allmlp.configure import build_config
from allmlp.data.batches import TensorBatches
from allmlp.data.images import get_dataset
from allmlp.engine import Experiment, build_optimizer
from allmlp.models import count_parameters, create_model
from allmlp.tasks.classification import data_model_args


def bench_config(preset: str, steps: int, checkpoint_interval: int = 0):
    """The preset for `steps` steps without evaluations, model arguments filled from the data."""
    cfg = build_config(preset, [f"train.max_steps={steps}", "train.eval_interval=0", "train.max_minutes=0",
                                f"train.checkpoint_interval={checkpoint_interval}"])
    spec = get_dataset(cfg.data.name)
    cfg.model.args.update(data_model_args(cfg, spec.shape[0], spec.shape[1], len(spec.classes)))
    return cfg


def make_batches(cfg, num_images: int = 4096) -> TensorBatches:
    """Random images and labels shaped like the preset's data set (speed does not depend on the pixels)."""
    spec = get_dataset(cfg.data.name)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(num_images, *spec.shape, generator=generator)  # (N, C, H, W)
    labels = torch.randint(0, len(spec.classes), (num_images,), generator=generator)
    return TensorBatches([images, labels], cfg.data.batch_size, cfg.train.seed)


def fresh_model(cfg) -> torch.nn.Module:
    """The preset's model with fixed initial weights."""
    torch.manual_seed(0)
    return create_model(cfg.model.name, **cfg.model.args)


def loss_fn(cfg):
    def loss(model, batch):
        images, labels = batch
        return F.cross_entropy(model(images), labels, label_smoothing=cfg.optim.label_smoothing), {}
    return loss


def bare_loop(cfg, batches: TensorBatches, steps: int) -> float:
    """A careful hand-written loop: AdamW, clipping, the same batches; returns seconds for `steps` steps."""
    model = fresh_model(cfg).train()
    optimizer = build_optimizer(cfg.optim, model)
    compute_loss = loss_fn(cfg)
    start = time.perf_counter()
    for step in range(steps):
        loss, _ = compute_loss(model, batches.batch(step))
        loss.backward()
        loss.item()  # a bare loop logs its loss too
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def engine_loop(cfg, batches: TensorBatches, steps: int) -> float:
    """`allmlp.engine.run` with fit's defaults (progress bar, metrics.jsonl, TensorBoard scalars, checkpoints);
    returns the seconds from the experiment handed over to the end of the run."""
    experiment = Experiment(fresh_model(cfg), loss_fn(cfg), batches)
    started = []
    with tempfile.TemporaryDirectory() as run_dir:
        train(cfg, Path(run_dir), build=lambda config: experiment,
              prepare=lambda exp: started.append(time.perf_counter()))
        return time.perf_counter() - started[0]


def checkpoint_seconds(model_name: str = "mixer_b16", rounds: int = 3) -> dict:
    """Seconds to write one full checkpoint (weights, config, trainer state) of `model_name` with AdamW state, and
    to load it back for --resume; the fastest of `rounds`."""
    from allmlp import checkpoint as ckpt

    cfg = build_config({"model": {"name": model_name, "num_classes": 1000}})
    model = create_model(cfg.model.name, **cfg.model.args)
    optimizer = build_optimizer(cfg.optim, model)
    for p in model.parameters():  # AdamW state exists after a first step
        p.grad = torch.zeros_like(p)
    optimizer.step()
    saves, loads = [], []
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        for _ in range(rounds):
            start = time.perf_counter()
            ckpt.save_run(run_dir, model, cfg)
            ckpt.save_trainer_state(run_dir, {"model": ckpt.state_dict_for_saving(model),
                                              "optimizer": optimizer.state_dict(),
                                              "rng": {"torch": torch.get_rng_state()}, "loop": {"step": 1}})
            saves.append(time.perf_counter() - start)
            start = time.perf_counter()
            ckpt.load_trainer_state(run_dir)
            loads.append(time.perf_counter() - start)
        size = sum(f.stat().st_size for f in run_dir.iterdir())
    return {"model": model_name, "params": count_parameters(model), "save_seconds": round(min(saves), 2),
            "load_seconds": round(min(loads), 2), "folder_megabytes": round(size / 2**20, 1)}


def main() -> None:
    """Alternate bare and engine rounds, time a Mixer-B/16 checkpoint, write the results JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="fashion_mixer")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--checkpoint-interval", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    add_common_arguments(parser, "engine_overhead")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.checkpoint_interval, args.rounds = 4, 2, 1
    cfg = bench_config(args.preset, args.steps, args.checkpoint_interval)
    batches = make_batches(cfg)
    warm_up = bench_config(args.preset, 5)  # first calls pay for lazy initialisation: not timed
    bare_loop(warm_up, batches, 5)
    engine_loop(warm_up, batches, 5)
    bare, engine = [], []
    for round_index in range(args.rounds):
        bare.append(bare_loop(cfg, batches, args.steps))
        engine.append(engine_loop(cfg, batches, args.steps))
        print(f"round {round_index}: bare {bare[-1]:.2f} s, engine {engine[-1]:.2f} s", flush=True)
    result = {"ratio": round(min(engine) / min(bare), 3), "ratio_of_medians": round(
                  sorted(engine)[len(engine) // 2] / sorted(bare)[len(bare) // 2], 3),
              "bare_seconds": [round(s, 2) for s in bare], "engine_seconds": [round(s, 2) for s in engine],
              "steps": args.steps, "checkpoint_interval": args.checkpoint_interval,
              "checkpoint": checkpoint_seconds("mixer_tiny_28" if args.smoke else "mixer_b16"), "batch_size": cfg.data.batch_size, "model": cfg.model.name,
              "params": count_parameters(fresh_model(cfg)), "preset": args.preset}
    write_results(output_path(args, "engine_overhead"), args, [cfg.train.seed], result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
