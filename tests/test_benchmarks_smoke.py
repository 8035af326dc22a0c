"""Every benchmark script runs end to end in its --smoke mode and writes a results file with the provenance keys.

The scripts run as subprocesses, two at a time, on tiny synthetic data (seconds of CPU each on an idle machine).
faults.py is exercised by tests/test_faults.py, which runs its kill fuzz.
"""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import tables  # noqa: E402  (benchmarks/ is not a package)
from common import MACHINE_KEYS, REQUIRED_KEYS  # noqa: E402

SMOKED = {  # script -> extra arguments and keys its results must hold
    "names.py": (["--seeds", "0", "1"], ("models", "names", "makemore_reference")),
    "shakespeare.py": (["--seeds", "0"], ("models", "plots", "gpt_search", "tuned_gpt_3min_val_loss")),
    "ngram.py": ([], ("names", "shakespeare", "names_list")),
    "highorder.py": ([], ("layer_speed", "memorisation", "shakespeare", "bound", "seed_lines")),
    "blocks.py": (["--seeds", "0"], ("fashion_mnist", "cifar10")),
    "fashion_mnist.py": ([], ("val_accuracy", "test_accuracy", "test_accuracy_single_view", "table", "best_on_val")),
    "bengio_three.py": ([], ("runs", "embedding_2d", "names")),
    "ddp.py": ([], ("samples_per_sec", "threads_per_process", "bf16_vs_fp32")),
    "precision.py": ([], ("families", "probe_seconds", "equal_time", "auto_within_5_percent_of_best")),
    "engine_overhead.py": ([], ("ratio", "checkpoint")),
    "generate.py": ([], ("contexts", "chars")),
    "context.py": ([], ("contexts", "budget_seconds")),
    "bigdata.py": ([], ("corpus_bytes", "peak_rss_mb", "tokens_per_s", "prepare_seconds")),
    "serve.py": ([], ("generate_chars_per_s", "web_overhead_ratio", "clients", "server_rss_mb")),
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


@pytest.mark.parametrize("name", [name for name in tables.RENDERERS if f"{tables.results_file(name)}.py" in SMOKED])
def test_every_table_renders_from_a_smoke_results_file(smoke_results, name):
    results = smoke_results[f"{tables.results_file(name)}.py"][2]
    table = tables.render(name, results).splitlines()
    header = next(i for i, line in enumerate(table) if line.startswith("| "))
    assert set(table[header + 1]) <= set("|-: ") and table[header + 2].startswith("| ")
    assert results["git_commit"][:7] in table[-1]  # the provenance line


def test_names_smoke_reports_seeds_with_spread_and_labels_makemore_splits(smoke_results):
    results = smoke_results["names.py"][2]
    assert results["seeds"] == [0, 1]
    bengio = results["models"]["bengio"]
    assert sorted(bengio["runs"]) == ["0", "1"] and len(bengio["val_loss"]["values"]) == 2
    assert results["models"]["ngram3"]["deterministic"] and len(results["models"]["ngram3"]["runs"]) == 1
    assert {entry["split"] for entry in results["makemore_reference"].values()} == {"dev/val", "test"}
    assert len(results["names"]["sha256"]) == 64 and results["names"]["stand_in"] is False


@pytest.mark.parametrize("script", ["names.py", "shakespeare.py", "fashion_mnist.py", "blocks.py"])
def test_equal_time_smoke_records_the_precision_each_run_trained_in(smoke_results, script):
    text = json.dumps(smoke_results[script][2])
    recorded = {value for value in re.findall(r'"precision": "([^"]+)"', text)}
    assert recorded and recorded <= {"32-true", "bf16-mixed"}  # auto's choice, never the word "auto"


def test_highorder_smoke_checks_the_bound_against_the_fastest_linear(smoke_results):
    results = smoke_results["highorder.py"][2]
    hidden = results["layer_speed"][0]
    fastest = min(hidden[key]["linear"] for key in hidden if key.startswith("seconds_"))
    piecewise = min(hidden[key]["piecewise"] for key in hidden if key.startswith("seconds_"))
    assert hidden["layer_time_ratio_vs_fastest_linear"] == pytest.approx(piecewise / fastest, abs=0.01)
    assert results["bound"].startswith("met" if piecewise / fastest <= 4 else "missed")


def test_generate_smoke_times_every_path_and_its_cost_by_position(smoke_results):
    contexts = smoke_results["generate.py"][2]["contexts"]
    assert sorted(contexts) == ["16", "8"]
    for entry in contexts.values():
        assert all(entry[key] > 0 for key in ("full_chars_per_s", "incremental_chars_per_s", "gpt_chars_per_s"))
        toeplitz = entry["models"]["causal_mixer_toeplitz"]
        assert entry["incremental_chars_per_s"] == toeplitz["incremental"]["chars_per_s"]
        assert {"incremental", "full", "window"} <= set(toeplitz) and "window" in entry["models"]["gpt"]
        assert toeplitz["incremental"]["chars"] == 40 and len(toeplitz["incremental"]["cost_ms_by_position"]) == 8


def test_context_smoke_trains_every_variant_at_every_length(smoke_results):
    contexts = smoke_results["context.py"][2]["contexts"]
    assert sorted(contexts) == ["16", "64"]
    for entry in contexts.values():
        assert set(entry) == {"causal_mixer_full", "causal_mixer_toeplitz_direct", "causal_mixer_toeplitz_fft", "gpt"}
        assert all(model["tokens_per_second"] > 0 and model["val_loss"] > 0 for model in entry.values())
    assert "model.toeplitz_method=fft" in contexts["64"]["causal_mixer_toeplitz_fft"]["overrides"]


def test_bigdata_smoke_compares_a_big_and_a_small_corpus(smoke_results):
    results = smoke_results["bigdata.py"][2]
    assert results["corpus_bytes"]["big"] >= 2 * 2**20 > 0.1 * 2**20 + 200 > results["corpus_bytes"]["small"]
    assert all(results[key].keys() == {"big", "small"} for key in ("peak_rss_mb", "tokens_per_s"))
    rss = results["peak_rss_mb"]
    assert results["rss_difference_mb"] == pytest.approx(rss["big"] - rss["small"], abs=0.11)
    assert all(value > 0 for value in [*results["peak_rss_mb"].values(), *results["tokens_per_s"].values()])


def test_shakespeare_smoke_tunes_the_gpt_and_times_every_model_to_its_loss(smoke_results):
    results = smoke_results["shakespeare.py"][2]
    search = results["gpt_search"]
    assert [t["stage"] for t in search["trials"]] == [1, 1, 2]  # 2 batch sizes x 1 lr, then the other width
    assert search["best"]["val_loss"] == min(t["val_loss"] for t in search["trials"])
    models = results["models"]
    assert results["budgets_minutes"] == [0.5, 1.0] and sorted(results["plots"]) == ["0.5", "1"]
    assert models["gpt_tuned"]["1"]["curve_final_val_loss"]["mean"] == results["tuned_gpt_3min_val_loss"]
    assert models["gpt_tuned"]["seconds_to_tuned_gpt_3min"] is not None  # it reaches its own final loss
    for name in ("gpt_tuned", "gpt_baby", "bengio", "ngram3"):
        assert all("seconds_to_tuned_gpt_3min" in models[name][budget] for budget in ("0.5", "1"))
    toeplitz = models["causal_mixer_toeplitz"]
    assert "skipped" in toeplitz or toeplitz["1"]["runs"]["0"]["model"]["token_mixing"] == "toeplitz"


def test_highorder_smoke_reference_lines_count_the_bounds_from_their_rows(smoke_results):
    from allmlp.models.highorder.reference_lines import REFERENCE_LINES

    table = smoke_results["highorder.py"][2]["seed_lines"]
    rows = list(table["lines"].values())
    assert [name for name in table["lines"]] == [line.name for line in REFERENCE_LINES]
    assert table["summary"]["lines"] == len(rows)
    assert table["summary"]["both_bounds"] == sum(r["first_step_loss"] <= 2 * r["ln_vocab"] + 1e-3
                                                  and r["val_loss"] < r["unigram_entropy"] for r in rows)
    assert table["summary"]["below_prior"] == sum(r["val_loss"] < r["prior_val_loss"] for r in rows)


def test_precision_smoke_has_every_family_field_and_equal_time_pair(smoke_results):
    results = smoke_results["precision.py"][2]
    assert sorted(results["families"]) == ["bengio", "mixer_tiny_28"] == sorted(results["probe_seconds"])
    for name, family in results["families"].items():
        assert family["fp32"] > 0 and family["bf16"] > 0 and family["auto"] in ("32-true", "bf16-mixed"), name
        assert abs(family["ratio"] - family["bf16"] / family["fp32"]) < 1e-2 and 0 < family["auto_vs_best"] <= 1
    assert sorted(results["equal_time"]) == ["causal_mixer_shakespeare", "fashion_mnist_mixer"]
    for name, pair in results["equal_time"].items():
        assert pair["fp32_val"] > 0 and pair["auto_val"] > 0 and pair["auto_precision"], name


def shakespeare_smoke(tmp_path: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    """benchmarks/shakespeare.py --smoke on one seed, writing `out`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(BENCHMARKS / "shakespeare.py"), "--smoke", "--out", str(out), "--seeds", "0", *args]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)


def test_shakespeare_extend_trains_only_what_the_file_lacks_and_records_each_part(tmp_path):
    out = tmp_path / "shakespeare.json"

    def bench(*args: str) -> subprocess.CompletedProcess:
        return shakespeare_smoke(tmp_path, out, *args)

    first = bench("--only", "ngram3", "bengio", "--note", "part one")
    assert first.returncode == 0, first.stderr[-2000:]
    before = json.loads(out.read_text())["models"]
    second = bench("--extend", "--only", "ngram3", "bengio", "gpt_baby", "--note", "part two")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "bengio: 0.5 min already in shakespeare.json" in second.stdout
    results = json.loads(out.read_text())
    assert [part["note"] for part in results["parts"]] == ["part one", "part two"]
    assert all(len(part["git_commit"]) == 40 for part in results["parts"])
    models = results["models"]
    for budget in ("0.5", "1"):
        assert models["bengio"][budget]["runs"] == before["bengio"][budget]["runs"]  # not trained again
        assert models["bengio"][budget]["part"] == 0 and models["ngram3"][budget]["part"] == 0
        assert models["gpt_baby"][budget]["part"] == 1
    assert "Part 1 (0.5 min, 1 min; seeds [0])" in tables.render("shakespeare", results)
    mismatch = bench("--extend", "--set", "optim.lr=1e-3")
    assert mismatch.returncode != 0 and "--extend: overrides is ['optim.lr=1e-3'] here but [] in" in mismatch.stderr
    assert len(mismatch.stderr.strip().splitlines()) == 1


def test_shakespeare_extend_trains_new_gpt_trials_and_retrains_the_gpt_when_its_best_changes(tmp_path):
    out = tmp_path / "shakespeare.json"
    first = shakespeare_smoke(tmp_path, out, "--only", "gpt_tuned")
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.count("== search ") == 3  # two batch sizes at the first width, then the other width
    results = json.loads(out.read_text())
    search = results["gpt_search"]
    best = search["best"]
    dropped = next(t for t in search["trials"] if t["stage"] == 1 and t["batch_size"] != best["batch_size"])
    search["trials"].remove(dropped)  # as if the grid had grown since this file's search
    search["best"] = {**best, "batch_size": dropped["batch_size"]}  # and that trial had been the better one
    out.write_text(json.dumps(results))
    second = shakespeare_smoke(tmp_path, out, "--extend", "--only", "gpt_tuned")
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.count("== search ") == 1 and f"_b{dropped['batch_size']}_" in second.stdout
    assert "trained again" in second.stdout
    again = json.loads(out.read_text())
    assert again["gpt_search"]["best"]["batch_size"] == best["batch_size"]
    assert again["gpt_search"]["previous_best"]["batch_size"] == dropped["batch_size"]
    assert sorted(t["part"] for t in again["gpt_search"]["trials"]) == [0, 0, 1]
    assert [again["models"]["gpt_tuned"][budget]["part"] for budget in ("0.5", "1")] == [1, 1]  # trained again
    assert again["tuned_gpt_3min_val_loss"] == again["models"]["gpt_tuned"]["0.5"]["curve_final_val_loss"]["mean"]


def test_shakespeare_merge_joins_two_parts_made_at_once_and_refuses_an_entry_both_made(tmp_path):
    base, mine, theirs = (tmp_path / f"{name}.json" for name in ("base", "mine", "theirs"))
    assert shakespeare_smoke(tmp_path, base, "--only", "ngram3").returncode == 0
    for path, model in ((mine, "bengio"), (theirs, "gpt_baby")):
        path.write_text(base.read_text())
        made = shakespeare_smoke(tmp_path, path, "--extend", "--only", model, "--note", model)
        assert made.returncode == 0, made.stderr[-2000:]
    merged = shakespeare_smoke(tmp_path, mine, "--extend", "--merge", str(theirs))
    assert merged.returncode == 0, merged.stderr[-2000:]
    assert "== " not in merged.stdout  # nothing trained
    results = json.loads(mine.read_text())
    assert [part.get("note") for part in results["parts"][1:3]] == ["bengio", "gpt_baby"]
    assert results["parts"][3]["merged"] == [str(theirs)]
    assert "Part 3 (merged theirs.json into this file): " in tables.render("shakespeare", results)
    models = results["models"]
    their_run = json.loads(theirs.read_text())["models"]["gpt_baby"]["1"]["runs"]["0"]
    assert models["gpt_baby"]["1"]["runs"]["0"] == {**their_run, "part": 2}  # their part 1 is part 2 here
    assert models["gpt_baby"]["1"]["part"] == 2 and models["bengio"]["1"]["part"] == 1
    assert models["ngram3"]["1"]["part"] == 0
    twice = shakespeare_smoke(tmp_path, mine, "--extend", "--merge", str(theirs))
    assert twice.returncode != 0 and "both files trained gpt_baby at" in twice.stderr
    assert len(twice.stderr.strip().splitlines()) == 1


def test_shakespeare_count_models_fill_a_budget_added_later_without_refitting(tmp_path):
    out = tmp_path / "shakespeare.json"
    assert shakespeare_smoke(tmp_path, out, "--only", "ngram3").returncode == 0
    older = json.loads(out.read_text())
    del older["models"]["ngram3"]["1"]  # as if the 1-minute budget had come in a later part without ngram3
    out.write_text(json.dumps(older))
    again = shakespeare_smoke(tmp_path, out, "--extend", "--only", "bengio")
    assert again.returncode == 0 and "fitting counts" not in again.stdout, again.stderr[-2000:]
    ngram3 = json.loads(out.read_text())["models"]["ngram3"]
    assert ngram3["1"] == ngram3["0.5"] and ngram3["1"]["part"] == 0


def test_shakespeare_extend_adds_the_seeds_an_entry_lacks_and_a_merge_takes_them(tmp_path):
    base, mine, theirs = (tmp_path / f"{name}.json" for name in ("base", "mine", "theirs"))
    assert shakespeare_smoke(tmp_path, base, "--only", "bengio", "gpt_baby").returncode == 0
    mine.write_text(base.read_text())
    theirs.write_text(base.read_text())
    more = shakespeare_smoke(tmp_path, theirs, "--extend", "--only", "bengio", "gpt_baby", "--seeds", "0", "1")
    assert more.returncode == 0, more.stderr[-2000:]
    assert "== bengio: 0.5 min, seeds [1]" in more.stdout  # seed 0 is in the file already
    bengio = json.loads(theirs.read_text())["models"]["bengio"]["0.5"]
    assert sorted(bengio["runs"]) == ["0", "1"] and len(bengio["val_loss"]["values"]) == 2
    assert [bengio["part"], bengio["runs"]["0"].get("part", 0), bengio["runs"]["1"]["part"]] == [0, 0, 1]
    assert shakespeare_smoke(tmp_path, mine, "--extend", "--only", "ngram3").returncode == 0
    merged = shakespeare_smoke(tmp_path, mine, "--extend", "--merge", str(theirs))
    assert merged.returncode == 0, merged.stderr[-2000:]
    results = json.loads(mine.read_text())
    assert results["models"]["bengio"]["0.5"]["runs"]["1"]["part"] == 2  # their part 1 is part 2 here
    assert results["models"]["bengio"]["0.5"]["val_loss"] == bengio["val_loss"]
    assert "ngram3" in results["models"]

