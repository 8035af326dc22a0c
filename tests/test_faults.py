"""Faults injected on purpose: kills at random instants, two trainings at once, planted payloads, broken files.

Every hostile input must end in exit code 2 with one line on stderr, no traceback, and no file of the run folder
changed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pickle
import random
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

from allmlp.cli import main
from conftest import TINY_BUDGET, TINY_MODELS

FAULTS_PATH = Path(__file__).parents[1] / "benchmarks" / "faults.py"
sys.path.insert(0, str(FAULTS_PATH.parent))  # the benchmark's own imports (benchmarks/ is not a package)
_spec = importlib.util.spec_from_file_location("faults_bench", FAULTS_PATH)
faults = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(faults)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """The fuzz's tiny image and text data sets."""
    return faults.write_tiny_data(tmp_path_factory.mktemp("data"))


def test_kill_fuzz_resumes_bitwise_equal(data, tmp_path):
    faults.preload()
    rng = random.Random(0)
    plan = [signal.SIGKILL] * 20 + [signal.SIGINT] * 8
    rng.shuffle(plan)
    result = faults.kill_chain(tmp_path, "mixer", data, steps=200, signals=plan, rng=rng, fork=True)
    assert result["kills"] == len(plan)
    assert result["equal"], f"resumed weights differ from the uninterrupted run's; exit codes {result['codes']}"
    assert result["steps_seen"] == sorted(result["steps_seen"]), "a checkpoint went back in time"
    assert 130 in result["codes"] and -signal.SIGKILL in result["codes"]


def _fork_train(data, run_args: list[str], log: Path) -> faults.Child:
    faults.preload()
    argv = ["train", *[w.format(**data) for w in faults.FAMILIES["mixer"]], *faults.COMMON,
            "train.max_steps=40", *run_args]
    return faults.Child(argv, log, fork=True)


def test_second_training_on_a_busy_folder_fails_at_once(data, tmp_path):
    run_dir = tmp_path / "run"
    first = _fork_train(data, ["--run-dir", str(run_dir), "train.max_steps=100000"], tmp_path / "first.log")
    faults.wait_for_progress(first, run_dir / "trainer_state.safetensors")
    second = _fork_train(data, ["--run-dir", str(run_dir)], tmp_path / "second.log")
    assert second.wait(120) == 2
    lines = (tmp_path / "second.log").read_text().strip().splitlines()
    assert len(lines) == 1 and str(run_dir) in lines[0] and f"process {first.pid}" in lines[0], lines
    first.signal(signal.SIGINT)
    assert first.wait(300) == 130
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if r["split"] == "train"]
    assert steps == list(range(5, 5 * len(steps) + 1, 5)), "the second training wrote into the first one's folder"
    assert [r["split"] for r in records].count("setup") == 1  # one run's setup record (threads, precision)


def test_two_trainings_of_one_preset_take_two_folders(data, tmp_path):
    out = tmp_path / "runs"
    children = [_fork_train(data, [f"train.out_dir={out}"], tmp_path / f"{i}.log") for i in range(2)]
    assert [child.wait(300) for child in children] == [0, 0]
    assert sorted(p.name for p in out.iterdir()) == ["fashion_mixer", "fashion_mixer-2"]
    for folder in out.iterdir():
        steps = [json.loads(line)["step"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
        assert steps == sorted(steps) and steps[-1] == 40


# ---- hostile files --------------------------------------------------------------------------------------------

# The tiny budget of conftest, run for 4 steps with a checkpoint every 2.
TINY_IMAGE = ["fashion_mixer", *TINY_BUDGET, *TINY_MODELS["fashion_mixer"], "model.channels_mlp_dim=32",
              "train.max_steps=4", "train.checkpoint_interval=2", "data.augment=false", "data.val_size=32"]
TINY_TEXT = ["names_causal_mixer", *TINY_BUDGET, "data.val_lines=20", "data.test_lines=20", "data.batch_size=16",
             "model.embedding_dim=16", "model.depth=2", "model.channels_mlp_dim=32", "train.max_steps=4",
             "train.checkpoint_interval=2"]


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> dict[str, Path]:
    """One tiny finished image run and one text run, trained in this process."""
    root = tmp_path_factory.mktemp("trained")
    runs = {"image": root / "image", "text": root / "text"}
    assert main(["train", *TINY_IMAGE, f"data.path={data['images']}", "--run-dir", str(runs["image"])]) == 0
    assert main(["train", *TINY_TEXT, f"data.path={data['text']}", "--run-dir", str(runs["text"])]) == 0
    return runs


class Payload:
    """Unpickling this creates the file `marker`: proof that a file ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _flip_byte(path: Path, offset_from_end: int = 10) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) - offset_from_end] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _write(name: str, content: bytes | str):
    def edit(run: Path) -> None:
        target = run / name
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
    return edit


def _legacy_trainer_state_payload(run: Path) -> None:
    (run / "trainer_state.safetensors").unlink()
    (run / "trainer_state.pt").write_bytes(pickle.dumps({"loop": Payload(run.parent / "marker")}))


def _legacy_torch_save_payload(run: Path) -> None:
    (run / "trainer_state.safetensors").unlink()
    torch.save({"optimizer": Payload(run.parent / "marker")}, run / "trainer_state.pt")


def _tokenizer_of_another_corpus(run: Path) -> None:
    (run / "tokenizer.json").write_text(json.dumps({"chars": list("ab\n"), "boundary": "\n"}))


def _weights_of_another_model(run: Path) -> None:
    from allmlp.checkpoint import save_weights
    from allmlp.models import create_model

    save_weights(create_model("mixer_tiny_28", depth=1), run / "model.safetensors")


def _trainer_state_of_another_model(run: Path) -> None:
    from allmlp.checkpoint import load_trainer_state, save_trainer_state

    state = load_trainer_state(run)
    state["model"] = {"weight": torch.zeros(3)}
    save_trainer_state(run, state)


def _metrics_line_broken_in_the_middle(run: Path) -> None:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join([lines[0], '{"step": 3, "spl', *lines[1:]]) + "\n")


# (case id, which run, how the run folder is damaged, command after the run folder, words the message must hold)
CASES = [
    ("weights-bit-flip", "image", lambda r: _flip_byte(r / "model.safetensors"), ["eval"], ["model.safetensors",
                                                                                           "checksum"]),
    ("weights-truncated", "image", lambda r: _truncate(r / "model.safetensors"), ["eval"], ["model.safetensors"]),
    ("weights-empty", "text", _write("model.safetensors", b""), ["generate", "--prompt", "ab"], ["model.safetensors"]),
    ("weights-other-model", "image", _weights_of_another_model, ["eval"], ["does not fit"]),
    ("weights-missing", "image", lambda r: (r / "model.safetensors").unlink(), ["eval"], ["model.safetensors"]),
    ("config-missing", "image", lambda r: (r / "config.yaml").unlink(), ["eval"], ["config.yaml"]),
    ("trainer-state-bit-flip", "image", lambda r: _flip_byte(r / "trainer_state.safetensors"), ["train", "--resume"],
     ["trainer_state.safetensors"]),
    ("trainer-state-truncated", "image", lambda r: _truncate(r / "trainer_state.safetensors"), ["train", "--resume"],
     ["trainer_state.safetensors"]),
    ("trainer-state-other-model", "image", _trainer_state_of_another_model, ["train", "--resume"],
     ["does not fit"]),
    ("trainer-state-missing", "image", lambda r: (r / "trainer_state.safetensors").unlink(), ["train", "--resume"],
     ["no checkpoint"]),
    ("legacy-state-pickle-payload", "image", _legacy_trainer_state_payload, ["train", "--resume"],
     ["trainer_state.pt"]),
    ("legacy-state-torch-payload", "image", _legacy_torch_save_payload, ["train", "--resume"], ["trainer_state.pt"]),
    ("tokenizer-other-corpus", "text", _tokenizer_of_another_corpus, ["generate", "--prompt", "ab"],
     ["tokenizer.json"]),
    ("tokenizer-not-json", "text", _write("tokenizer.json", "{chars"), ["eval"], ["tokenizer.json"]),
    ("tokenizer-not-utf8", "text", _write("tokenizer.json", b'{"chars": ["\xff"]}'), ["eval"], ["tokenizer.json"]),
    ("tokenizer-wrong-type", "text", _write("tokenizer.json", "[1, 2]"), ["eval"], ["tokenizer.json"]),
    ("metrics-broken-line", "image", _metrics_line_broken_in_the_middle, ["report"], ["metrics.jsonl:2"]),
    ("resume-other-optimizer", "image", lambda r: None, ["train", "--resume", "optim.name=sgd"], ["optim.name"]),
    ("reference-multirun-flag", "image", lambda r: None, ["train", "-m", "net.n=3"], ["allmlp sweep"]),
    ("reference-train-false", "text", lambda r: None, ["train", "train=False", "checkpoint=x.ckpt"],
     ["allmlp generate"]),
]


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_run_folder_is_one_clean_line(case, trained, tmp_path, capsys):
    name, kind, damage, command, words = case
    run = tmp_path / "run"
    shutil.copytree(trained[kind], run)
    damage(run)
    before = _digests(run)
    argv = [command[0], str(run), *command[1:]]
    if command[0] == "train" and "--resume" not in command:
        argv = command  # the reference projects' words go to `allmlp train` itself
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, (name, err)
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert all(word in err[0] for word in words), err[0]
    assert _digests(run) == before, "the failed command changed the run folder"
    assert not (tmp_path / "marker").exists(), "a file in the run folder ran code"


def test_a_line_cut_short_by_a_crash_does_not_block_resume(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained["image"], run)
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 5, "split": "tr')  # a kill in the middle of a write
    assert main(["train", str(run), "--resume", "train.max_steps=6"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 6


def test_resume_of_a_missing_folder_names_it(tmp_path, capsys):
    assert main(["train", str(tmp_path / "runs" / "missing"), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run folder not found" in err[0] and "missing" in err[0]


def test_rejected_run_leaves_no_folder(data, tmp_path, capsys):
    out = tmp_path / "runs"
    code = main(["train", *TINY_IMAGE, f"data.path={data['images']}", f"train.out_dir={out}",
                 "optim.manual_backprop=true"])
    assert code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_a_file_inside_a_run_folder_names_the_run(trained, capsys):
    assert main(["eval", str(trained["image"] / "model.safetensors")]) == 0
    assert "test/acc" in capsys.readouterr().out


def test_ddp_error_is_reported_once(data, tmp_path):
    import subprocess

    command = [sys.executable, "-m", "allmlp", "train", *[w.format(**data) for w in faults.FAMILIES["bengio"]],
               *faults.COMMON, "train.devices=2", "train.strategy=ddp", "optim.manual_backprop=true",
               "--run-dir", str(tmp_path / "run")]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "manual_backprop" in lines[0], done.stderr[-3000:]
    assert not (tmp_path / "run").exists()


def test_sigterm_saves_like_ctrl_c(data, tmp_path):
    run_dir = tmp_path / "run"
    child = _fork_train(data, ["--run-dir", str(run_dir), "train.max_steps=100000"], tmp_path / "log")
    faults.wait_for_progress(child, run_dir / "trainer_state.safetensors")
    time.sleep(0.05)
    child.signal(signal.SIGTERM)
    assert child.wait(120) == 130
    assert "interrupted at step" in (tmp_path / "log").read_text()
