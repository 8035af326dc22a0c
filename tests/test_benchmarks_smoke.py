"""Every benchmark script runs end to end in its --smoke mode and writes a results file with the provenance keys.

The scripts run as subprocesses, two at a time, on tiny synthetic data (seconds of CPU each on an idle machine).
faults.py is exercised by tests/test_faults.py, which runs its kill fuzz.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
from common import MACHINE_KEYS, REQUIRED_KEYS  # noqa: E402  (benchmarks/ is not a package)

SMOKED = {  # script -> extra arguments and keys its results must hold
    "names.py": (["--seeds", "0", "1"], ("models", "names", "makemore_reference")),
    "shakespeare.py": (["--seeds", "0"], ("models", "plot")),
    "ngram.py": ([], ("names", "shakespeare", "names_list")),
    "highorder.py": ([], ("layer_speed", "memorisation", "shakespeare", "bound")),
    "blocks.py": (["--seeds", "0"], ("fashion_mnist", "parameter_table_markdown")),
    "fashion_mnist.py": ([], ("val_accuracy", "test_accuracy", "test_accuracy_single_view")),
    "bengio_three.py": ([], ("runs", "embedding_2d", "names")),
    "ddp.py": ([], ("samples_per_sec", "threads_per_process", "bf16_vs_fp32")),
    "precision.py": ([], ("families", "probe_seconds", "equal_time", "auto_within_5_percent_of_best")),
    "engine_overhead.py": ([], ("ratio", "checkpoint")),
}
TIMEOUT_SECONDS = 600  # a crowded 2-core machine can be ten times slower than an idle one


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory) -> dict[str, dict]:
    """Run every --smoke, two processes at a time; script -> (returncode, output tail, results or None)."""
    folder = tmp_path_factory.mktemp("smoke")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    pending, running, done = list(SMOKED), {}, {}
    while pending or running:
        while pending and len(running) < 2:
            script = pending.pop(0)
            out = folder / f"{script[:-3]}.json"
            command = [sys.executable, str(BENCHMARKS / script), "--smoke", "--out", str(out), "--note", "test",
                       *SMOKED[script][0]]
            log = open(folder / f"{script}.log", "w")
            running[script] = (subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT),
                               out, log)
        script = next(iter(running))
        process, out, log = running.pop(script)
        code = process.wait(timeout=TIMEOUT_SECONDS)
        log.close()
        done[script] = (code, (folder / f"{script}.log").read_text()[-3000:],
                        json.loads(out.read_text()) if out.is_file() else None)
    return done


@pytest.mark.parametrize("script", list(SMOKED))
def test_smoke_run_writes_results_with_provenance(smoke_results, script):
    code, log, results = smoke_results[script]
    assert code == 0, log
    assert results is not None, log
    missing = [key for key in (*REQUIRED_KEYS, *SMOKED[script][1]) if key not in results]
    assert not missing, f"{script}: results lack {missing}"
    assert results["smoke"] is True and results["note"] == "test"
    assert results["command"].startswith("python ") and "--smoke" in results["command"]
    assert len(results["git_commit"]) == 40 and isinstance(results["git_dirty"], bool)
    assert all(key in results["machine"] for key in MACHINE_KEYS)
    assert results["date_utc"].endswith("Z")


def test_names_smoke_reports_seeds_with_spread_and_labels_makemore_splits(smoke_results):
    results = smoke_results["names.py"][2]
    assert results["seeds"] == [0, 1]
    bengio = results["models"]["bengio"]
    assert sorted(bengio["runs"]) == ["0", "1"] and len(bengio["val_loss"]["values"]) == 2
    assert results["models"]["ngram3"]["deterministic"] and len(results["models"]["ngram3"]["runs"]) == 1
    assert {entry["split"] for entry in results["makemore_reference"].values()} == {"dev/val", "test"}
    assert len(results["names"]["sha256"]) == 64 and results["names"]["stand_in"] is False


def test_highorder_smoke_checks_the_bound_against_the_fastest_linear(smoke_results):
    results = smoke_results["highorder.py"][2]
    hidden = results["layer_speed"][0]
    fastest = min(hidden[key]["linear"] for key in hidden if key.startswith("seconds_"))
    piecewise = min(hidden[key]["piecewise"] for key in hidden if key.startswith("seconds_"))
    assert hidden["layer_time_ratio_vs_fastest_linear"] == pytest.approx(piecewise / fastest, abs=0.01)
    assert results["bound"].startswith("met" if piecewise / fastest <= 4 else "missed")


def test_precision_smoke_has_every_family_field_and_equal_time_pair(smoke_results):
    results = smoke_results["precision.py"][2]
    assert sorted(results["families"]) == ["bengio", "mixer_tiny_28"] == sorted(results["probe_seconds"])
    for name, family in results["families"].items():
        assert family["fp32"] > 0 and family["bf16"] > 0 and family["auto"] in ("32-true", "bf16-mixed"), name
        assert abs(family["ratio"] - family["bf16"] / family["fp32"]) < 1e-2 and 0 < family["auto_vs_best"] <= 1
    assert sorted(results["equal_time"]) == ["causal_mixer_shakespeare", "fashion_mnist_mixer"]
    for name, pair in results["equal_time"].items():
        assert pair["fp32_val"] > 0 and pair["auto_val"] > 0 and pair["auto_precision"], name
