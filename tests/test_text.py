"""Text data: tokenizer round trip, unknown chars, bad files, splits, and resume-exact language-model batches."""

from __future__ import annotations

import json
import math

import pytest
import torch

from allmlp.configure import build_config
from allmlp.data.text import BOUNDARY, CharTokenizer, TextBatches, load_text_splits, read_text_file
from allmlp.tasks import language


def text_cfg(path, name="text", **data):
    return build_config({"model": {"name": "causal_mixer"}, "data": {"name": name, "path": str(path), **data}})


def test_tokenizer_round_trip_and_json():
    text = "Hello, wörld! ∑ 12\n"
    tok = CharTokenizer(text)
    assert tok.vocab_size == len(set(text)) and tok.chars == sorted(set(text))
    assert tok.decode(tok.encode(text)) == text
    again = CharTokenizer.from_dict(json.loads(json.dumps(tok.to_dict())))
    assert again.chars == tok.chars and again.encode(text) == tok.encode(text) and again.boundary_id is None
    lines = CharTokenizer("abc", BOUNDARY)
    assert lines.boundary_id == 0 and lines.vocab_size == 4 and lines.decode([1, 0, 2]) == "a\nb"


def test_unknown_chars_error_or_drop():
    tok = CharTokenizer("abc ")
    with pytest.raises(ValueError, match="never saw: 'X', 'Z'"):
        tok.encode("a Xb Z")
    with pytest.warns(UserWarning, match="dropping 2 unknown"):
        assert tok.decode(tok.encode("a Xb Z", unknown="drop")) == "a b "


def test_bad_files_are_one_line_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(ValueError, match="empty.txt is empty"):
        load_text_splits(text_cfg(empty).data)
    with pytest.raises(ValueError, match=r"latin1.txt is not UTF-8 text \(byte 3: invalid continuation byte\)"):
        load_text_splits(text_cfg(latin).data)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_text_file(tmp_path / "missing.txt")
    (tmp_path / "books").mkdir()
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'books'} is a folder without \*.txt files"):
        read_text_file(tmp_path / "books")
    with pytest.raises(ValueError, match="not a text corpus"):
        load_text_splits(build_config({"data": {"name": "fashion_mnist"}}).data)


def test_running_text_splits_are_contiguous(tmp_path):
    path = tmp_path / "book.txt"
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    path.write_text(text)
    tok, streams = load_text_splits(text_cfg(path, train_fraction=0.8, val_fraction=0.1).data)
    assert [len(streams[k]) for k in ("train", "val", "test")] == [800, 100, 100]
    assert tok.decode(torch.cat([streams["train"], streams["val"], streams["test"]])) == text


def test_line_splits_shuffle_with_fixed_seed_and_counts(tmp_path):
    path = tmp_path / "names.txt"
    names = [f"n{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(200)]
    path.write_text("\n".join(names) + "\n")
    cfg = text_cfg(path, name="lines", val_lines=20, test_lines=30)
    tok, streams = load_text_splits(cfg.data)
    held = {k: tok.decode(v).strip("\n").split("\n") for k, v in streams.items()}
    assert [len(held[k]) for k in ("train", "val", "test")] == [150, 20, 30]
    assert sorted(sum(held.values(), [])) == sorted(names) and held["test"] != names[-30:]
    assert tok.boundary_id is not None and tok.decode(streams["val"][:1]) == BOUNDARY
    assert load_text_splits(cfg.data)[1]["test"].equal(streams["test"])  # same split every time


def test_batches_are_a_pure_function_of_seed_and_index():
    tokens = torch.arange(500) % 37
    batches = TextBatches(tokens, 16, 8, seed=3, kind="causal")
    x, y = batches.batch(7)
    assert x.shape == y.shape == (8, 16) and torch.equal(x[:, 1:], y[:, :-1])
    again = TextBatches(tokens, 16, 8, seed=3, kind="causal").batch(7)
    assert torch.equal(again[0], x)
    halves = [batches.batch(7, rank, 2)[0] for rank in (0, 1)]
    assert torch.equal(torch.cat(halves), x)
    assert not torch.equal(batches.batch(8)[0], x)


def test_window_and_centered_samples():
    tokens = torch.arange(100)
    x, y = TextBatches(tokens, 5, 4, kind="window").batch(0)
    assert x.shape == (4, 5) and torch.equal(y, x[:, -1] + 1)
    x, y = TextBatches(tokens, 4, 4, kind="centered").batch(0)
    assert x.shape == (4, 4) and torch.equal(x[:, 1] + 1, y) and torch.equal(x[:, 2] - 1, y)


def test_line_data_masks_other_lines():
    tok = CharTokenizer("abcd", BOUNDARY)
    stream = torch.tensor(tok.encode("\nab\ncd\n"))
    window = TextBatches(stream, 4, 1, kind="window", boundary_id=tok.boundary_id)
    x, y = window.samples(torch.tensor([5]))  # the stream is padded with 4 boundaries; "ab\nc" -> "d"
    assert tok.decode(x[0]) == "\n\n\nc" and tok.decode(y) == "d"
    causal = TextBatches(stream, 4, 2, kind="causal", boundary_id=tok.boundary_id)
    x, y = causal.samples(torch.tensor([0, 3]))
    assert tok.decode(x[0]) == "\nab\n" and y[0].tolist() == tok.encode("ab\n") + [-1]
    assert tok.decode(x[1]) == "\ncd\n" and y[1, :3].tolist() == tok.encode("cd\n") and y[1, 3] == -1


def test_language_task_reports_bits_per_char(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("abcd" * 300)
    cfg = build_config({"model": {"name": "causal_mixer", "embedding_dim": 8, "depth": 1, "channels_mlp_dim": 16,
                                  "num_heads": 1},
                        "data": {"name": "text", "path": str(path), "context_length": 8, "batch_size": 4}})
    exp = language.build(cfg)
    assert cfg.model.args["vocab_size"] == 4 and exp.model.context_length == 8
    assert exp.samples_per_batch == 32
    metrics = exp.final_evaluate(exp.model)
    assert metrics["val/bpc"] == pytest.approx(metrics["val/loss"] / math.log(2))
    assert metrics["test/ppl"] == pytest.approx(math.exp(metrics["test/loss"]))
    assert abs(metrics["val/loss"] - math.log(4)) < 0.5  # an untrained model is near uniform
    tree = {k: v for k, v in cfg.to_dict().items() if k != "preset"}
    with pytest.raises(ValueError, match="data.context_length=8 and model.context_length=16 disagree"):
        language.build(build_config(tree, ["model.context_length=16", "data.context_length=8"]))
    # typed alone, it wins over the context length the tree gives (issue 13: the README's names_bengio command)
    assert language.build(build_config(tree, ["model.context_length=16"])).model.context_length == 16
    with pytest.raises(ValueError, match="data.type=window does not fit"):
        language.build(build_config({"model": {"name": "causal_mixer"}, "data": {"name": "text", "path": str(path),
                                                                                 "type": "window"}}))


def test_fetch_corpus_caches_and_verifies_checksums(tmp_path, monkeypatch):
    from allmlp.data import text

    monkeypatch.setenv("ALLMLP_CACHE", str(tmp_path))
    calls = []

    def build(target):
        calls.append(target)
        target.write_text("to be or not to be\n")

    monkeypatch.setitem(text.CORPORA, "tiny", text.Corpus("a test corpus", build))
    path = text.fetch_corpus("tiny")
    assert path.read_text() == "to be or not to be\n" and text.fetch_corpus("tiny") == path and len(calls) == 1
    path.write_text("to be or not to be?\n")
    with pytest.raises(OSError, match="checksum mismatch"):
        text.fetch_corpus("tiny")
    monkeypatch.setitem(text.CORPORA, "pinned", text.Corpus("wrong pin", build, sha256="0" * 64))
    with pytest.raises(OSError, match="corpus pinned: checksum mismatch"):
        text.fetch_corpus("pinned")
    with pytest.raises(KeyError, match="unknown corpus 'nope'"):
        text.fetch_corpus("nope")
