"""The recipe under kills: a training with mixup, cutmix, random erasing, drop path and an EMA, killed (SIGKILL and
Ctrl-C) at random instants and resumed each time, ends bitwise equal to an uninterrupted one, the EMA included."""

import importlib.util
import random
import signal
import sys
from pathlib import Path

from safetensors.torch import load_file

FAULTS_PATH = Path(__file__).parents[1] / "benchmarks" / "faults.py"
sys.path.insert(0, str(FAULTS_PATH.parent))  # the benchmark's own imports (benchmarks/ is not a package)
_spec = importlib.util.spec_from_file_location("faults_bench_recipe", FAULTS_PATH)
faults = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(faults)

RECIPE = ["data.mixup_alpha=0.2", "data.cutmix_alpha=1.0", "data.mix_prob=0.7", "data.random_erasing=0.3",
          "model.drop_path_rate=0.2", "train.ema_decay=0.9"]


def test_recipe_kill_chain_resumes_bitwise_with_its_ema(tmp_path):
    data = faults.write_tiny_data(tmp_path / "data")
    faults.preload()
    rng = random.Random(1)
    plan = [signal.SIGKILL, signal.SIGINT, signal.SIGKILL, signal.SIGKILL, signal.SIGINT]
    reference = faults.reference_run(tmp_path, "mixer", data, 40, True, RECIPE)
    result = faults.kill_chain(tmp_path, "mixer", data, steps=40, signals=plan, rng=rng, fork=True, extra=RECIPE,
                               reference=reference)
    assert result["kills"] == len(plan) and result["equal"], result["codes"]
    ema = [load_file(str(folder / "model_ema.safetensors")) for folder in (reference, tmp_path / "mixer_chain")]
    assert faults.same_weights(*ema)
    assert not faults.same_weights(ema[0], faults.weights_of(reference))  # the average, not a copy of the weights
