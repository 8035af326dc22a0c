"""Hostile inputs to config, data and weights files: exit code 2, one line on stderr, no traceback, no code run.

Every case is a row of a table: it writes its files under tmp_path and returns the command line. Cases that fail
before any training run `allmlp.cli.main` in this process (a subprocess costs seconds of imports on 2 cores), and
no file or folder under tmp_path may change. Pickle payloads (CIFAR batches, .pth, .npz weights) go through the
real CLI in a subprocess; YAML payloads run in-process, where `yaml.safe_load` is the same code.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import allmlp
from allmlp.cli import main
from conftest import TINY_BUDGET, separable_images, write_idx

FAST_MIXER = [*TINY_BUDGET, "model.hidden_dim=8", "model.depth=1", "model.patch_size=7", "model.tokens_mlp_dim=8",
              "model.channels_mlp_dim=8", "data.batch_size=16"]
CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
MARKER = "payload-ran"  # relative: the cases run in tmp_path, where a payload would create it


class TouchOnUnpickle:
    """Unpickling this creates `marker`: proof that a loader ran code from a file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# --- files the cases write ---------------------------------------------------------------------------------------

def fashion_folder(root: Path, images: np.ndarray | None = None, labels: np.ndarray | None = None,
                   compress: bool = True) -> Path:
    """Fashion-MNIST-named IDX files (tiny); `images` / `labels` replace the training split's."""
    folder = root / "fashion"
    folder.mkdir()
    for split, n in (("train", 64), ("t10k", 32)):
        x, y = separable_images(n)
        if split == "train":
            x = x if images is None else images
            y = y if labels is None else labels
        write_idx(folder / f"{split}-images-idx3-ubyte", x, compress)
        write_idx(folder / f"{split}-labels-idx1-ubyte", y, compress)
    return folder


def damaged(path: Path, how: str) -> None:
    """Damage a file in place: cut it in half, or flip all bits of one byte at a position."""
    raw = bytearray(path.read_bytes())
    if how == "truncate":
        raw = raw[:len(raw) // 2]
    else:
        raw[int(how)] ^= 0xFF
    path.write_bytes(bytes(raw))


def train_fashion(folder: Path, *extra: str) -> list[str]:
    return ["train", "fashion_mixer", f"data.path={folder}", *FAST_MIXER, *extra]


def idx_damaged(file: str, how: str, compress: bool = True):
    def setup(tmp: Path) -> list[str]:
        folder = fashion_folder(tmp, compress=compress)
        damaged(folder / (file + (".gz" if compress else "")), how)
        return train_fashion(folder)
    return setup


def idx_replaced(images=None, labels=None):
    def setup(tmp: Path) -> list[str]:
        return train_fashion(fashion_folder(tmp, images, labels))
    return setup


def idx_float_images(tmp: Path) -> list[str]:
    folder = fashion_folder(tmp)
    x = np.zeros((64, 28, 28), ">f4")
    header = bytes([0, 0, 0x0D, 3]) + b"".join(int(d).to_bytes(4, "big") for d in x.shape)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + x.tobytes()))
    return train_fashion(folder)


def idx_fetched_from_a_corrupt_cache(tmp: Path) -> list[str]:
    folder = tmp / "cache" / "fashion_mnist"  # the test points ALLMLP_CACHE at tmp/cache
    folder.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        write_idx(folder / name, np.zeros((4, 28, 28) if "images" in name else (4,), np.uint8))
    damaged(folder / "train-images-idx3-ubyte.gz", "10")
    return ["data", "fetch", "fashion_mnist"]


def cifar_folder(tmp: Path, batch) -> Path:
    folder = tmp / "cifar"
    folder.mkdir()
    for name in CIFAR_BATCHES:
        (folder / name).write_bytes(pickle.dumps(batch))
    return folder


def cifar_malformed(batch):
    def setup(tmp: Path) -> list[str]:
        return ["train", "cifar10_mixer_1", f"data.path={cifar_folder(tmp, batch)}", *FAST_MIXER]
    return setup


def run_folder(config_text: str | bytes):
    """A run folder whose config.yaml holds `config_text`, evaluated with `allmlp eval`."""
    def setup(tmp: Path) -> list[str]:
        run = tmp / "run"
        run.mkdir()
        config = run / "config.yaml"
        config.write_bytes(config_text if isinstance(config_text, bytes) else config_text.encode())
        (run / "model.safetensors").write_bytes(b"never read: the config fails first")
        return ["eval", str(run)]
    return setup


def preset_file(text: str):
    def setup(tmp: Path) -> list[str]:
        (tmp / "preset.yaml").write_text(text)
        return ["train", str(tmp / "preset.yaml"), *FAST_MIXER]
    return setup


def text_corpus(raw: bytes | None):
    """names_bengio trained on corpus.txt holding `raw` (None: a folder of that name)."""
    def setup(tmp: Path) -> list[str]:
        if raw is None:
            (tmp / "corpus.txt").mkdir()
        else:
            (tmp / "corpus.txt").write_bytes(raw)
        return ["train", "names_bengio", f"data.path={tmp / 'corpus.txt'}", "train.max_steps=2",
                "train.progress=false"]
    return setup


def override(*items: str):
    def setup(tmp: Path) -> list[str]:
        return ["train", "fashion_mixer", *items]
    return setup


def weights_damaged(name: str):
    """A weights file cut in half, given to `allmlp finetune`."""
    def setup(tmp: Path) -> list[str]:
        path = tmp / name
        state = {"stem.proj.weight": torch.ones(8, 3, 4, 4)}
        if path.suffix == ".npz":
            np.savez(path, **{"stem/kernel": np.ones((4, 4, 3, 8), np.float32)})
        elif path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(state, path)
        else:
            torch.save(state, path)
        damaged(path, "truncate")
        return ["finetune", "--weights", str(path), "cifar10_mixer_1"]
    return setup


def cifar_truncated(tmp: Path) -> list[str]:
    folder = cifar_folder(tmp, {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 3]})
    damaged(folder / "data_batch_1", "truncate")
    return ["train", "cifar10_mixer_1", f"data.path={folder}", *FAST_MIXER]


LABELS_64 = separable_images(64)[1]
CASES = [
    # IDX files: damaged containers, headers of another shape or type, labels out of range, counts that disagree
    pytest.param(idx_damaged("train-images-idx3-ubyte", "truncate"), r"train-images-idx3-ubyte.gz: corrupt or "
                 r"truncated gzip data", id="idx-gz-truncated"),
    pytest.param(idx_damaged("train-images-idx3-ubyte", "10"), r"train-images-idx3-ubyte.gz: corrupt or truncated "
                 r"gzip data \(Error -3 while decompressing data", id="idx-gz-bitflip-deflate-header"),
    pytest.param(idx_damaged("train-labels-idx1-ubyte", "30"), r"train-labels-idx1-ubyte.gz: corrupt or truncated "
                 r"gzip data", id="idx-gz-bitflip-middle"),
    pytest.param(idx_damaged("train-images-idx3-ubyte", "truncate", compress=False), r"train-images-idx3-ubyte: "
                 r"truncated or corrupt IDX file", id="idx-raw-truncated"),
    pytest.param(idx_damaged("train-images-idx3-ubyte", "2", compress=False), r"train-images-idx3-ubyte: not an "
                 r"IDX file \(bad magic number\)", id="idx-raw-bitflip-magic"),
    pytest.param(idx_damaged("train-images-idx3-ubyte", "11", compress=False), r"train-images-idx3-ubyte: "
                 r"truncated or corrupt IDX file", id="idx-raw-bitflip-shape"),
    pytest.param(idx_replaced(images=np.zeros((64, 14, 56), np.uint8)), r"train-images-idx3-ubyte.gz: IDX images "
                 r"are uint8 \(64, 14, 56\), expected uint8 \(N, 28, 28\) for fashion_mnist", id="idx-14x56"),
    pytest.param(idx_replaced(images=np.zeros((64, 784), np.uint8)), r"IDX images are uint8 \(64, 784\)",
                 id="idx-flat-images"),
    pytest.param(idx_float_images, r"IDX images are float32 \(64, 28, 28\), expected uint8", id="idx-float-dtype"),
    pytest.param(idx_replaced(labels=np.where(np.arange(64) == 5, 12, LABELS_64).astype(np.uint8)),
                 r"train-labels-idx1-ubyte.gz: label 12 out of range \(the data set has 10 classes, 0..9\)",
                 id="idx-label-12"),
    pytest.param(idx_replaced(labels=LABELS_64[:50]), r"64 images but train-labels-idx1-ubyte.gz has 50 labels",
                 id="idx-count-mismatch"),
    pytest.param(idx_replaced(labels=np.zeros((64, 2), np.uint8)), r"train-labels-idx1-ubyte.gz: IDX labels are "
                 r"uint8 \(64, 2\), expected uint8 \(N,\)", id="idx-labels-2d"),
    pytest.param(idx_fetched_from_a_corrupt_cache, r"fashion_mnist/train-images-idx3-ubyte.gz: corrupt or "
                 r"truncated gzip data", id="data-fetch-corrupt-cache"),
    # CIFAR-10 batches that unpickle (safely) into the wrong thing
    pytest.param(cifar_truncated, r"data_batch_1: not a CIFAR-10 python batch \(pickle data was truncated\)",
                 id="cifar-truncated"),
    pytest.param(cifar_malformed([1, 2, 3]), r"data_batch_1: not a CIFAR-10 python batch \(a list, expected a dict\)",
                 id="cifar-not-a-dict"),
    pytest.param(cifar_malformed({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 10]}),
                 r"data_batch_1: label 10 out of range", id="cifar-label-10"),
    pytest.param(cifar_malformed({b"data": np.zeros((4, 1024), np.uint8), b"labels": [0, 1, 2, 3]}),
                 r"data_batch_1: CIFAR batch 'data' is uint8 array \(4, 1024\)", id="cifar-wrong-shape"),
    pytest.param(cifar_malformed({b"data": np.zeros((4, 3072), np.uint8)}),
                 r"data_batch_1: CIFAR batch has 4 images but 'labels' NoneType", id="cifar-no-labels"),
    # config.yaml of a run folder that is not a config
    pytest.param(run_folder(""), r"config.yaml is empty: expected a mapping of sections", id="config-empty"),
    pytest.param(run_folder("hello\n"), r"config.yaml: expected a mapping of sections .* found a str",
                 id="config-string"),
    pytest.param(run_folder("- model\n- data\n"), r"config.yaml: expected a mapping .* found a list",
                 id="config-list"),
    pytest.param(run_folder("model: 5\n"), r"config.yaml: model.name: unknown model '5'", id="config-model-5"),
    pytest.param(run_folder("train: [1]\n"), r"config.yaml: section 'train' must be a mapping of keys, found list",
                 id="config-train-list"),
    pytest.param(run_folder("train: {log_interval: 0}\n"), r"config.yaml: train.log_interval=0: must be >= 1",
                 id="config-out-of-range"),
    pytest.param(run_folder(b"model:\n  name: mixer_tiny_28\xff\n"), r"config.yaml: not UTF-8 text \(byte 28\)",
                 id="config-not-utf8"),
    pytest.param(run_folder("model: {name: [\n"), r"config.yaml: not valid YAML \(line 2: ", id="config-bad-yaml"),
    pytest.param(run_folder("model: &m {name: mlp_classifier, inner: *m}\n"), r"config.yaml: "
                 r"'model.inner.inner.inner.name': nested deeper than 4 levels", id="config-contains-itself"),
    pytest.param(preset_file("- a list\n"), r"preset.yaml: expected a mapping of sections", id="preset-list"),
    # YAML tags that would run code (a created marker file fails the digest check): in-process, as safe_load is
    # the same code in any process
    pytest.param(run_folder(f"model: !!python/object/apply:os.system ['touch {MARKER}']\n"), r"config.yaml: not "
                 r"valid YAML \(line 1: could not determine a constructor for the tag "
                 r"'tag:yaml.org,2002:python/object/apply:os.system'\)", id="payload-run-config-yaml"),
    pytest.param(preset_file(f"train:\n  seed: !!python/object/apply:os.system ['touch {MARKER}']\n"),
                 r"preset.yaml: not valid YAML \(line 2: could not determine a constructor", id="payload-preset-yaml"),
    # out-of-range values, one per kind of rule
    pytest.param(override("train.log_interval=0"), r"train.log_interval=0: must be >= 1", id="log-interval-0"),
    pytest.param(override("train.max_steps=-5"), r"train.max_steps=-5: must be >= 0", id="max-steps-negative"),
    pytest.param(override("train.accumulate_grad_batches=0"), r"train.accumulate_grad_batches=0: must be >= 1",
                 id="accumulate-0"),
    pytest.param(override("data.context_length=-1"), r"data.context_length=-1: must be >= 0", id="context-negative"),
    pytest.param(override("data.batch_size=0"), r"data.batch_size=0: must be >= 1", id="batch-size-0"),
    pytest.param(override("train.devices=0"), r"train.devices=0: must be >= 1", id="devices-0"),
    pytest.param(override("train.devices=3"), r"data.batch_size=128: must be divisible by train.devices \* "
                 r"train.num_nodes = 3", id="batch-indivisible"),
    pytest.param(override("optim.lr=-1e-3"), r"optim.lr=-0.001: must be > 0", id="lr-negative"),
    pytest.param(override("optim.betas=[0.9,1.2]"), r"optim.betas=\(0.9, 1.2\): must be two numbers in \[0, 1\)",
                 id="betas-out-of-range"),
    pytest.param(override("optim.label_smoothing=1"), r"optim.label_smoothing=1.0: must be in \[0, 1\)",
                 id="label-smoothing-1"),
    pytest.param(override("train.precision=fp8"), r"train.precision='fp8': must be one of", id="precision-unknown"),
    pytest.param(override("optim.schedule=linear"), r"optim.schedule='linear': must be one of cosine, constant, "
                 r"plateau", id="schedule-unknown"),
    pytest.param(override("data.train_fraction=0.8", "data.val_fraction=0.3"), r"data.train_fraction=0.8 \+ "
                 r"data.val_fraction=0.3: must sum to at most 1", id="fractions-sum"),
    pytest.param(override("data.unknown_chars=ignore"), r"data.unknown_chars='ignore': must be one of error, drop",
                 id="unknown-chars"),
    pytest.param(lambda tmp: ["sweep", "fashion_mixer", "optim.lr=0:0.1", "--trials", "1"], r"sweep: optim.lr at "
                 r"0.0: optim.lr=0.0: must be > 0", id="sweep-range-end-out-of-range"),
    # text corpus and weights files
    pytest.param(text_corpus(b"anna\nbob\n\xe9mile\n"), r"corpus.txt is not UTF-8 text \(byte 9: invalid "
                 r"continuation byte\)", id="corpus-not-utf8"),
    pytest.param(text_corpus(None), r"corpus.txt is a folder without \*.txt files", id="corpus-folder"),
    pytest.param(weights_damaged("w.npz"), r"w.npz: not a readable .npz archive \(File is not a zip file\)",
                 id="npz-truncated"),
    pytest.param(weights_damaged("w.pth"), r"w.pth: not a readable torch state dict", id="pth-truncated"),
    pytest.param(weights_damaged("w.safetensors"), r"w.safetensors: corrupt safetensors file",
                 id="safetensors-truncated"),
]


def tree_digest(root: Path) -> dict[str, str]:
    """Path -> SHA-256 of every file (or "folder") under `root`: a case must not change, add or remove any.

    The default train.out_dir `runs` itself is left out: it holds run folders and is no run's; a run folder inside
    it still counts.
    """
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
            for p in sorted(root.rglob("*")) if p != root / "runs"}


def assert_one_line_error(code: int, out: str, err: str, message: str) -> None:
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("allmlp "), err
    assert "error: " in lines[0]
    assert re.search(message, lines[0]), lines[0]


@pytest.mark.parametrize("setup, message", CASES)
def test_hostile_input_is_one_line_error(setup, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ALLMLP_CACHE", str(tmp_path / "cache"))
    argv = setup(tmp_path)
    before = tree_digest(tmp_path)
    code = main(argv)
    captured = capsys.readouterr()
    assert_one_line_error(code, captured.out, captured.err, message)
    assert not (tmp_path / MARKER).exists(), "the payload ran"
    assert tree_digest(tmp_path) == before


def run_cli(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    # This checkout's package first: an editable install elsewhere must not answer for it.
    source = str(Path(allmlp.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")]),
           "ALLMLP_CACHE": str(cwd / "cache")}
    return subprocess.run([sys.executable, "-m", "allmlp", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def cifar_payload(tmp: Path, marker: Path) -> list[str]:
    folder = cifar_folder(tmp, {b"data": TouchOnUnpickle(marker), b"labels": [0]})
    return ["train", "cifar10_mixer_1", f"data.path={folder}", *FAST_MIXER]


def pth_payload(tmp: Path, marker: Path) -> list[str]:
    torch.save({"head.weight": torch.zeros(2), "head.bias": TouchOnUnpickle(marker)}, tmp / "w.pth")
    return ["finetune", "--weights", str(tmp / "w.pth"), "cifar10_mixer_1"]


def npz_payload(tmp: Path, marker: Path) -> list[str]:
    np.savez(tmp / "w.npz", **{"stem/kernel": np.array([TouchOnUnpickle(marker)], dtype=object)})
    return ["finetune", "--weights", str(tmp / "w.npz"), "cifar10_mixer_1"]


PAYLOADS = [
    pytest.param(cifar_payload, r"data_batch_1: not a CIFAR-10 python batch \(refused to load 'posix.system'\)",
                 id="cifar-batches"),
    pytest.param(pth_payload, r"w.pth: holds Python objects other than tensors, which are never loaded",
                 id="pretrained-pth"),
    pytest.param(npz_payload, r"w.npz: holds pickled Python objects, which are never loaded", id="pretrained-npz"),
]


@pytest.mark.parametrize("setup, message", PAYLOADS)
def test_planted_payload_never_runs(setup, message, tmp_path):
    marker = tmp_path / "marker"
    argv = setup(tmp_path, marker)
    before = tree_digest(tmp_path)
    done = run_cli(argv, tmp_path)
    assert not marker.exists(), "the payload ran"
    assert_one_line_error(done.returncode, done.stdout, done.stderr, message)
    assert tree_digest(tmp_path) == before
