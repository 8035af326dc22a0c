"""The UTF-8 byte tokenizer: round trips on mixed scripts, streaming decode, run folders, training and generation."""

from __future__ import annotations

import json

import pytest
import torch

from allmlp.checkpoint import load_tokenizer
from allmlp.cli import main
from allmlp.configure import build_config
from allmlp.data.text import BOUNDARY, CharTokenizer, load_text_splits, tokenizer_from_dict
from allmlp.data.tokenizers import ByteDecoder, ByteTokenizer
from allmlp.generate import stream_text

MIXED = "Hello, wörld! Привет, мир. 日本語のテキスト 😀👍🏽 naïve café\n"


def test_round_trip_on_latin_cyrillic_cjk_and_emoji():
    tok = ByteTokenizer()
    ids = tok.encode(MIXED)
    assert ids == list(MIXED.encode("utf-8")) and tok.vocab_size == 256
    assert (len(MIXED), len(ids)) == (51, 88)  # 2-byte Latin and Cyrillic, 3-byte CJK, 4-byte emoji
    assert tok.decode(ids) == MIXED and tok.decode(torch.tensor(ids)) == MIXED
    assert tok.encode_array(MIXED).tolist() == ids and tok.unknown_chars(MIXED) == []
    again = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))
    assert isinstance(again, ByteTokenizer) and again.encode(MIXED) == ids
    lines = ByteTokenizer(BOUNDARY)
    assert lines.boundary_id == 10 and tokenizer_from_dict(lines.to_dict()).boundary_id == 10
    assert tok.decode([0x41, 0xff, 0x42]) == "A\ufffdB"  # an invalid byte becomes U+FFFD, never an error
    with pytest.raises(ValueError, match="boundary must be one byte"):
        ByteTokenizer("é")


def test_stream_decoder_holds_back_incomplete_chars_and_replaces_invalid_ones():
    decoder = ByteDecoder()
    emoji = "😀".encode("utf-8")  # 4 bytes
    assert [decoder.step(b) for b in emoji] == ["", "", "", "😀"]
    assert [decoder.step(b) for b in "ж".encode("utf-8")] == ["", "ж"]
    assert decoder.step(0xE6) == "" and decoder.flush() == "\ufffd"  # the text ended inside a char
    decoder = ByteDecoder()
    assert "".join(decoder.step(b) for b in [0x61, 0xC3, 0x41]) == "a\ufffdA"  # a lead byte without continuation


class ScriptedBytes(torch.nn.Module):
    """A causal 'model' that emits the bytes of a fixed text in turn, one per generation step."""

    lm_kind, context_length = "causal", 4

    def __init__(self, text: bytes):
        super().__init__()
        self.script = list(text)
        self.calls = 0
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def forward(self, idx):
        logits = torch.full((1, idx.shape[1], 256), -1e9)
        logits[0, -1, self.script[self.calls % len(self.script)]] = 0
        self.calls += 1
        return logits


def test_generation_streams_whole_chars_from_bytes():
    text = "日本 😀!".encode("utf-8") + b"\xe6"  # ends inside a char: the tail is replaced
    pieces = list(stream_text(ScriptedBytes(text), ByteTokenizer(), "hi", len(text), temperature=0))
    assert pieces == ["日", "本", " ", "😀", "!", "\ufffd"]


def test_char_tokenizer_files_without_a_type_still_load(tmp_path):
    cfg = build_config({"model": {"name": "causal_mixer", "vocab_size": 3}})
    (tmp_path / "tokenizer.json").write_text(json.dumps({"chars": ["a", "b", "c"], "boundary": None}))
    tokenizer = load_tokenizer(tmp_path, cfg)
    assert isinstance(tokenizer, CharTokenizer) and tokenizer.encode("cab") == [2, 0, 1]
    with pytest.raises(ValueError, match="unknown tokenizer type 'words'"):
        tokenizer_from_dict({"type": "words"})


def test_bytes_config_gives_byte_streams_and_rejects_unknown_kinds(tmp_path):
    corpus = tmp_path / "mixed.txt"
    corpus.write_text(MIXED * 20)
    cfg = build_config({"data": {"name": "text", "path": str(corpus), "tokenizer": "bytes"}})
    tokenizer, streams = load_text_splits(cfg.data)
    assert isinstance(tokenizer, ByteTokenizer)
    assert tokenizer.decode(torch.cat([streams["train"], streams["val"], streams["test"]])) == MIXED * 20
    with pytest.raises(ValueError, match="data.tokenizer='words': must be one of char, bytes"):
        build_config({"data": {"tokenizer": "words"}})


def test_tiny_training_and_generation_with_bytes(tmp_path, capsys):
    corpus = tmp_path / "mixed.txt"
    corpus.write_text(MIXED * 40)
    run = tmp_path / "run"
    code = main(["train", "shakespeare_mixer", "data.name=text", f"data.path={corpus}", "data.tokenizer=bytes",
                 "model.embedding_dim=16", "model.depth=1", "model.channels_mlp_dim=32", "data.context_length=16",
                 "data.batch_size=16", "train.max_steps=40", "train.eval_interval=0", "train.progress=false",
                 "data.eval_targets=256", "optim.warmup_steps=5", "--run-dir", str(run)])
    assert code == 0
    assert json.loads((run / "tokenizer.json").read_text()) == {"type": "bytes", "boundary": None}
    capsys.readouterr()
    assert main(["generate", str(run), "--prompt", "Привет 😀", "--max-new-tokens", "60", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    prompt_bytes = len("Привет 😀".encode("utf-8"))
    assert out.startswith("Привет 😀") and len(out.encode("utf-8")) >= prompt_bytes + 40
    assert main(["eval", str(run)]) == 0
    assert json.loads((run / "eval.json").read_text())["val/loss"] < 5.0  # below ln(256) = 5.55: it learned
