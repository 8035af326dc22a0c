"""Data parallel training on CPU (two gloo processes) and the precision flag reaching the model."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from allmlp.cli import main
from allmlp.config import ConfigError
from allmlp.configure import build_config, load_config
from allmlp.engine import fit, run

TINY = ["data.batch_size=64", "train.max_steps=6", "train.eval_interval=3", "train.checkpoint_interval=0",
        "train.progress=false", "train.log_interval=2", "train.accelerator=cpu", "model.hidden_dim=32",
        "model.depth=2", "model.tokens_mlp_dim=16", "model.channels_mlp_dim=64", "model.patch_size=7",
        "optim.warmup_steps=2", "data.augment=false",  # augmentation draws depend on the rank, so it is off
        # SGD: Adam divides by sqrt(v) and turns round-off on gradients that are exactly zero in theory (a bias
        # that the next LayerNorm removes) into lr-sized steps, which would hide what this test compares.
        "optim.name=sgd", "optim.lr=0.05"]


def test_two_processes_match_one_process_with_the_same_global_batch(tiny_fashion, tmp_path):
    ddp_run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "allmlp", "train", "fashion_mixer", f"data.path={tiny_fashion}", *TINY,
               "train.devices=2", "train.strategy=ddp", "--run-dir", str(ddp_run)]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stderr[-2000:]  # both ranks exited (no hang at exit) and cleanly

    # Rank 0 alone prints and writes: one of each line, one event file, no duplicated metric records.
    assert done.stdout.count("run folder:") == 1 and done.stdout.count("saved:") == 1
    assert "GLOBAL_RANK: 1" not in done.stderr
    assert len(list(ddp_run.glob("events.out.tfevents.*"))) == 1
    records = [json.loads(line) for line in (ddp_run / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["step"], r["split"]) for r in records]
    assert len(keys) == len(set(keys)) and {(3, "val"), (6, "train"), (6, "test")} <= set(keys)
    setup, = [r for r in records if r["split"] == "setup"]
    assert setup["threads"] == 1 and setup["processes"] == 2  # OMP_NUM_THREADS=1 above, in each process
    assert load_config(ddp_run / "config.yaml").train.precision_chosen == "32-true"  # rank 0 chose for both
    assert sorted(p.name for p in ddp_run.iterdir() if not p.name.startswith("events")) == [
        "config.yaml", "metrics.jsonl", "model.safetensors", "trainer_state.safetensors"]

    cfg = build_config("fashion_mixer", [f"data.path={tiny_fashion}", *TINY])
    built = []
    run(cfg, tmp_path / "single", prepare=lambda exp, *_: built.append(exp))
    exp = built[0]
    ddp_weights = load_file(str(ddp_run / "model.safetensors"))
    # DDP averages the two half-batch gradients: the same update as the full batch up to float32 summation order.
    for name, value in exp.model.state_dict().items():
        assert torch.allclose(ddp_weights[name], value, atol=1e-6, rtol=0), name


def _linear_output_dtypes(tiny_fashion, tmp_path, precision):
    cfg = build_config("fashion_mixer", [f"data.path={tiny_fashion}", *TINY, "train.max_steps=1",
                                         "train.eval_interval=0", f"train.precision={precision}"])
    seen, built = set(), []

    def watch_dtypes(exp, *_):
        built.append(exp)
        exp.model.blocks[0].channel_mixing.fc1.register_forward_hook(lambda m, i, out: seen.add(out.dtype))

    run(cfg, tmp_path / precision, prepare=watch_dtypes)
    return seen, {p.dtype for p in built[0].model.parameters()}


def test_bf16_mixed_reaches_the_model(tiny_fashion, tmp_path):
    seen, weights = _linear_output_dtypes(tiny_fashion, tmp_path, "bf16-mixed")
    assert seen == {torch.bfloat16} and weights == {torch.float32}  # bf16 compute, fp32 master weights
    seen, _ = _linear_output_dtypes(tiny_fashion, tmp_path, "32-true")
    assert seen == {torch.float32}


def test_fp16_on_cpu_is_a_clear_error(capsys, tmp_path):
    with pytest.raises(ConfigError, match="train.precision=16-mixed needs a GPU"):
        run(build_config("fashion_mixer", ["train.precision=16-mixed", "train.accelerator=cpu"]), tmp_path / "run")
    assert main(["train", "fashion_mixer", "train.precision=16-mixed", "train.accelerator=cpu"]) == 2
    assert "error: train.precision=16-mixed needs a GPU" in capsys.readouterr().err


def test_hand_written_backprop_refuses_ddp(tmp_path):
    from types import SimpleNamespace

    from allmlp.engine import Experiment

    two_ranks = SimpleNamespace(world_size=2, global_rank=0)
    exp = Experiment(torch.nn.Linear(2, 2), lambda m, b: (None, {}), None, manual_backward=True)
    with pytest.raises(ConfigError, match="bypassing DDP's gradient averaging"):
        fit(two_ranks, exp, build_config("fashion_mixer"), tmp_path)
