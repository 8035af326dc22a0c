"""Prepared corpora: token files give exactly the in-memory batches; corrupt or mismatched files are one-line errors."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from allmlp.cli import main
from allmlp.configure import build_config
from allmlp.data import prepared
from allmlp.data.prepared import TokenFile, load_prepared, prepare, prepared_dir
from allmlp.data.text import CharTokenizer, TextBatches, load_text_splits


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ALLMLP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(prepared, "CHUNK_BYTES", 1000)  # many chunks, so that splits fall inside chunks


def running_text(chars: int = 12_000, seed: int = 0) -> str:
    rng = random.Random(seed)
    words = ["to", "be", "or", "not", "ROMEO:", "ночь", "夜", "😀", "café", "\n"]
    return " ".join(rng.choice(words) for _ in range(chars // 4))[:chars]


def data_cfg(path, **data):
    return build_config({"data": {"name": data.pop("name", "text"), "path": str(path), **data}}).data


def same_batches(cfg, kind: str, context: int = 16, batch: int = 8) -> None:
    """Training batches (whole and per DDP rank) and evaluation windows agree between memory and token files."""
    tok_mem, mem = load_text_splits(cfg)
    prepare(cfg)
    tok_file, files = load_prepared(cfg)
    assert tok_file.to_dict() == tok_mem.to_dict()
    boundary = tok_mem.boundary_id
    for split in ("train", "val", "test"):
        assert len(files[split]) == len(mem[split]) > context + 2
        a = TextBatches(mem[split], context, batch, 3, kind, boundary)
        b = TextBatches(files[split], context, batch, 3, kind, boundary)
        assert a.steps_per_epoch == b.steps_per_epoch
        for index in range(5):
            for rank, world in ((0, 1), (0, 2), (1, 2)):
                assert all(torch.equal(u, v) for u, v in zip(a.batch(index, rank, world), b.batch(index, rank, world)))
        starts = a.eval_starts(200)
        assert torch.equal(starts, b.eval_starts(200))
        assert all(torch.equal(u, v) for u, v in zip(a.samples(starts), b.samples(starts)))


@pytest.mark.parametrize("tokenizer", ["char", "bytes"])
def test_running_text_batches_are_identical_both_ways(tmp_path, tokenizer):
    corpus = tmp_path / "mixed.txt"
    corpus.write_text(running_text())
    same_batches(data_cfg(corpus, tokenizer=tokenizer, train_fraction=0.8, val_fraction=0.1), "causal")
    same_batches(data_cfg(corpus, tokenizer=tokenizer, max_chars=5000), "window")


@pytest.mark.parametrize("kind", ["causal", "window", "centered"])
def test_line_data_batches_are_identical_both_ways(tmp_path, kind):
    rng = random.Random(1)
    names = ["".join(rng.choice("abcdefghijkl") for _ in range(rng.randint(2, 9))) for _ in range(600)]
    corpus = tmp_path / "names.txt"
    corpus.write_text("\n".join(names) + "\n")
    same_batches(data_cfg(corpus, name="lines", val_lines=50, test_lines=50), kind, context=8)


def test_a_folder_is_one_corpus_in_sorted_order_both_ways(tmp_path):
    books = tmp_path / "books"
    (books / "b").mkdir(parents=True)
    (books / "b" / "2.txt").write_text("second book\n" * 20)
    (books / "1.txt").write_text("first book " * 20)
    (books / "notes.md").write_text("not a book")
    cfg = data_cfg(books, train_fraction=1.0, val_fraction=0.0)
    tokenizer, streams = load_text_splits(cfg)
    assert tokenizer.decode(streams["train"]) == "first book " * 20 + "\n\n" + "second book\n" * 20
    same_batches(data_cfg(books, train_fraction=0.6, val_fraction=0.2), "causal", context=4, batch=2)


def test_vocabularies_over_256_use_uint16_files(tmp_path):
    corpus = tmp_path / "cjk.txt"
    corpus.write_text("".join(chr(0x4E00 + (i * 7919) % 400) for i in range(8000)))
    cfg = data_cfg(corpus)
    folder = prepare(cfg)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["dtype"] == "uint16" and len(meta["tokenizer"]["chars"]) == 400
    assert (folder / "train.bin").stat().st_size == 2 * meta["files"]["train"]["tokens"]
    mem = load_text_splits(cfg)[1]["train"]
    assert torch.equal(load_prepared(cfg)[1]["train"][torch.arange(len(mem))], mem)


def test_token_file_gathers_and_pads_like_a_tensor(tmp_path):
    path = tmp_path / "t.bin"
    np.arange(10, dtype=np.uint8).tofile(path)
    tokens = TokenFile(path, "uint8", 10)
    assert tokens[torch.tensor([[9, 0], [3, 3]])].tolist() == [[9, 0], [3, 3]]
    padded = tokens.padded(2, 1, 99)
    assert len(padded) == 13 and padded[torch.arange(13)].tolist() == [99, 99, *range(10), 99]
    assert tokens.positions_of(3, 10).tolist() == [3]


def test_training_on_token_files_equals_training_in_memory(tmp_path, capsys):
    corpus = tmp_path / "text.txt"
    corpus.write_text(running_text(20_000))
    assert main(["data", "prepare", str(corpus), "--tokenizer", "bytes"]) == 0
    assert "train on it with: data.prepared=true data.tokenizer=bytes" in capsys.readouterr().out
    common = ["shakespeare_mixer", "data.name=text", f"data.path={corpus}", "data.tokenizer=bytes",
              "model.embedding_dim=16", "model.depth=1", "model.channels_mlp_dim=32", "data.context_length=16",
              "data.batch_size=8", "train.max_steps=6", "train.eval_interval=0", "train.progress=false",
              "data.eval_targets=512"]
    losses = {}
    for mode in ("false", "true"):
        run = tmp_path / f"run_{mode}"
        assert main(["train", *common, f"data.prepared={mode}", "--run-dir", str(run)]) == 0
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        losses[mode] = [r["loss"] for r in records if "loss" in r]
        assert main(["eval", str(run)]) == 0
        losses[mode].append(json.loads((run / "eval.json").read_text())["test/loss"])
    assert losses["true"] == losses["false"] and len(losses["true"]) >= 2


def test_corrupt_or_mismatched_token_files_are_one_line_errors(tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text(running_text())
    cfg = data_cfg(corpus)
    with pytest.raises(FileNotFoundError, match=r"is not prepared for these data settings \(tokenizer char\); "
                                                r"run `allmlp data prepare .*text.txt --tokenizer char` first"):
        load_prepared(cfg)
    folder = prepare(cfg)
    with pytest.raises(ValueError, match=r"prepared with another tokenizer"):
        load_prepared(cfg, CharTokenizer("abc"))
    train = folder / "train.bin"
    data = bytearray(train.read_bytes())
    data[100] ^= 1
    train.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"train.bin: checksum mismatch"):
        load_prepared(cfg)
    train.write_bytes(bytes(data[:-3]))
    with pytest.raises(ValueError, match=rf"train.bin: {len(data) - 3} bytes, expected {len(data)}"):
        load_prepared(cfg)
    (folder / "val.bin").unlink()
    prepare(cfg)  # preparing again replaces the damaged folder whole
    assert load_prepared(cfg)[1]["val"].length > 0
    (folder / "meta.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"meta.json: corrupt prepared-corpus record"):
        load_prepared(cfg)
    assert prepared_dir(data_cfg(corpus, tokenizer="bytes")) != folder  # the tokenizer is part of the key


def test_prepare_command_errors(tmp_path, capsys):
    assert main(["data", "prepare", str(tmp_path / "missing.txt")]) == 2
    assert "text file not found" in capsys.readouterr().err
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9".encode("latin-1") * 10)
    assert main(["data", "prepare", str(bad)]) == 2
    assert "latin1.txt is not UTF-8 text (byte 3: invalid continuation byte)" in capsys.readouterr().err
    assert main(["data", "prepare", str(bad), "--tokenizer", "words"]) == 2
    assert "data.tokenizer='words': must be one of char, bytes" in capsys.readouterr().err
