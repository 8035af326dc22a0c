"""Generation and chat: one protocol for window, centered and causal models; sampling rules; piped chat."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from allmlp.checkpoint import save_run
from allmlp.cli import main
from allmlp.configure import build_config
from allmlp.data.text import BOUNDARY, CharTokenizer
from allmlp.cli.chat import main as chat_main
from allmlp.generate import generate_text, model_input, sample_id
from allmlp.models import create_model

TINY = {"causal_mixer": dict(embedding_dim=8, depth=1, channels_mlp_dim=16, num_heads=1),
        "chat_mixer": dict(embedding_dim=8, depth=1, tokens_mlp_dim=4, channels_mlp_dim=16)}


class Centered(torch.nn.Module):
    """A centered model: guesses the char after the middle's left neighbour (enough to test the protocol)."""

    lm_kind = "centered"

    def __init__(self, vocab_size: int, context_length: int):
        super().__init__()
        self.context_length, self.vocab_size = context_length, vocab_size
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, idx):
        left = idx[:, self.context_length // 2 - 1]
        return torch.nn.functional.one_hot((left + 1) % self.vocab_size, self.vocab_size).float() * 10 * self.scale


def saved_run(tmp_path: Path, name: str = "causal_mixer", text: str = "hello world\n", boundary=None) -> Path:
    """A saved, untrained run folder of a tiny text model."""
    tokenizer = CharTokenizer(text, boundary)
    cfg = build_config({"model": {"name": name, "vocab_size": tokenizer.vocab_size, "context_length": 8,
                                  **TINY[name]}, "data": {"name": "text", "path": "unused.txt"}})
    torch.manual_seed(0)
    run = tmp_path / name
    save_run(run, create_model(cfg.model.name, **cfg.model.args), cfg, tokenizer)
    return run


@pytest.mark.parametrize("name", ["causal_mixer", "chat_mixer"])
def test_window_and_causal_models_generate_through_one_protocol(name):
    tokenizer = CharTokenizer("abcdefgh ")
    torch.manual_seed(0)
    model = create_model(name, vocab_size=tokenizer.vocab_size, context_length=8, **TINY[name])
    text = generate_text(model, tokenizer, "abc" * 9, 40, seed=1)  # a prompt longer than the context
    assert len(text) == 40 and set(text) <= set(tokenizer.chars)
    assert generate_text(model, tokenizer, "abc", 40, seed=1) == generate_text(model, tokenizer, "abc", 40, seed=1)
    assert len(generate_text(model, tokenizer, "", 5, temperature=0)) == 5  # empty prompt: starts from a newline


def test_centered_models_generate_too():
    tokenizer = CharTokenizer("abcd")
    model = Centered(tokenizer.vocab_size, 6)
    assert generate_text(model, tokenizer, "ab", 6, temperature=0) == "cdabcd"


def test_context_is_cut_padded_and_reset_at_line_boundaries():
    tokenizer = CharTokenizer("abc", BOUNDARY)  # ids: \n=0 a=1 b=2 c=3
    window = create_model("chat_mixer", vocab_size=4, context_length=4, **TINY["chat_mixer"])
    causal = create_model("causal_mixer", vocab_size=4, context_length=4, **TINY["causal_mixer"])
    assert model_input(window, tokenizer, [0, 1]).tolist() == [[0, 0, 0, 1]]
    assert model_input(window, tokenizer, [0, 1, 2, 3, 1, 2, 3]).tolist() == [[2, 3, 1, 2, 3][-4:]]
    assert model_input(causal, tokenizer, [0, 1, 2, 0, 3]).tolist() == [[0, 3]]  # the previous line is gone
    assert model_input(causal, tokenizer, [0, 1, 2, 3, 1, 2]).tolist() == [[2, 3, 1, 2]]


def test_sampling_rules():
    logits = torch.tensor([1.0, 3.0, 2.0, 0.5])
    generator = torch.Generator().manual_seed(0)
    assert sample_id(logits, temperature=0) == 1
    assert {sample_id(logits, 1.0, top_k=1, generator=generator) for _ in range(20)} == {1}
    assert {sample_id(logits, 1.0, top_p=0.01, generator=generator) for _ in range(20)} == {1}
    assert {sample_id(logits, 5.0, top_k=2, generator=generator) for _ in range(200)} == {1, 2}
    assert len({sample_id(logits, 5.0, generator=generator) for _ in range(200)}) == 4
    # extremes a client may send are valid settings, not errors: a temperature whose logits / T overflow, a top_p
    # that rounds to 0 in float32; both keep only the likeliest char
    assert {sample_id(logits, 1e-300, generator=generator) for _ in range(20)} == {1}
    assert {sample_id(logits, 1.0, top_p=1e-300, generator=generator) for _ in range(20)} == {1}


def test_chat_answers_each_piped_line_and_obeys_commands(tmp_path):
    run = saved_run(tmp_path)
    stdin = io.StringIO("hello\n/len 7\n/temp 0\n/topk 3\nwor\n/settings\n/quit\nnever read\n")
    stdout = io.StringIO()
    assert chat_main([str(run), "--max-new-tokens", "12", "--seed", "0"], stdin=stdin, stdout=stdout) == 0
    lines = stdout.getvalue().split("\n")
    answers = [lines[0], lines[4]]
    assert len(answers[0]) == 12 and len(answers[1]) == 7
    assert lines[1:4] == ["length = 7", "temperature = 0.0", "top_k = 3"]
    assert lines[5:10] == ["temperature  0 (greedy)", "top_k        3", "top_p        off",
                           "length       7 chars per answer", "seed         0"]


@pytest.mark.parametrize("bad_line, message", [
    ("/bogus", "input line 2: unknown command '/bogus'"), ("/temp hot", "input line 2: /temperature needs a number"),
    ("helXo", "input line 2: characters the model never saw: 'X'")])
def test_piped_chat_stops_at_the_first_bad_line_with_exit_code_2(tmp_path, capsys, monkeypatch, bad_line, message):
    run = saved_run(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"he\n{bad_line}\nwor\n"))
    assert main(["chat", str(run), "--max-new-tokens", "4", "--seed", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"allmlp chat: error: {message}") and len(captured.err.splitlines()) == 1
    assert len(captured.out.splitlines()) == 1  # the first line was answered, nothing after the bad one


def test_chat_command_reads_piped_stdin_until_eof(tmp_path):
    run = saved_run(tmp_path, "chat_mixer", "abc ")
    result = subprocess.run([str(Path(sys.executable).with_name("allmlp")), "chat", str(run), "--max-new-tokens",
                             "5", "--seed", "0"], input="ab\n\nca\n", capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split("\n")) == 4 and all(len(line) == 5 for line in result.stdout.split("\n")[:3])


def test_generate_command_prompts_and_reference_style_arguments(tmp_path, capsys):
    run = saved_run(tmp_path)
    assert main(["generate", str(run), "--prompt", "he", "--prompt", "wo", "--max-new-tokens", "9", "--seed", "3",
                 "topk=2"]) == 0
    first, second = capsys.readouterr().out.split("\n" + "-" * 40 + "\n")
    assert first.startswith("he") and len(first.strip("\n")) >= 2 and second.startswith("wo")
    assert main(["generate", str(run), "num_predict=4", 'prompts=["ol", "lo"]', "temperature=0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ol") and "\nlo" in out
    assert main(["generate", str(run), "--prompt", "hi?"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "never saw: '?', 'i'" in captured.err
    assert main(["generate", str(run), "--prompt", "hi?", "--unknown", "drop", "--max-new-tokens", "3"]) == 0
    assert capsys.readouterr().err == "allmlp generate: warning: dropping 2 unknown characters: '?', 'i'\n"
    assert main(["generate", str(run), "--reapply", "2"]) == 2
    assert "needs a centered model" in capsys.readouterr().err


@pytest.mark.parametrize("word, message", [
    ("num_predict=abc", "num_predict=abc: expected a whole number"), ("topk=1.5", "topk=1.5: expected a whole number"),
    ("temperature=hot", "temperature=hot: expected a number"), ("seed=", "seed=: expected a whole number")])
def test_generate_names_the_key_and_value_of_a_bad_setting(tmp_path, capsys, word, message):
    assert main(["generate", str(saved_run(tmp_path)), word]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == f"allmlp generate: error: {message}\n"


def test_reference_style_prompt_lists_with_or_without_inner_quotes(tmp_path, capsys):
    run = saved_run(tmp_path, text="Who are you? hello, world\n")
    for words in (["prompts=[Who are you?]"], ['prompts=["Who are you?"]'], ["prompts=['Who are you?']"]):
        assert main(["generate", str(run), *words, "num_predict=3", "temperature=0"]) == 0
        assert capsys.readouterr().out.startswith("Who are you?"), words
    for words in (["prompts=[he, wo]"], ["prompts=[he,", "wo]"], ['prompts=["he", "wo"]']):  # [he, wo] unquoted:
        assert main(["generate", str(run), *words, "num_predict=3", "temperature=0"]) == 0  # two shell words
        first, second = capsys.readouterr().out.split("\n" + "-" * 40 + "\n")
        assert first.startswith("he") and second.startswith("wo") and "[" not in first + second, words
    assert main(["generate", str(run), 'prompts=["hello, world"]', "num_predict=2"]) == 0  # a quoted comma stays
    assert capsys.readouterr().out.startswith("hello, world")


def test_an_empty_prompt_starts_a_fresh_line(tmp_path, capsys):
    assert main(["generate", str(saved_run(tmp_path)), "--prompt", "", "--max-new-tokens", "6", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert len(out) == 6 + 1  # six generated chars and the closing newline, no prompt


def test_a_prompt_that_is_not_utf8_is_one_clear_line(tmp_path):
    run = saved_run(tmp_path)
    allmlp = str(Path(sys.executable).with_name("allmlp"))
    result = subprocess.run([allmlp, "generate", str(run), "--prompt", b"he\xffl"], capture_output=True, timeout=120)
    assert result.returncode == 2 and result.stdout == b""
    assert result.stderr.decode() == ("allmlp generate: error: prompt 1 is not UTF-8 text (byte 0xff at character 3); "
                                      "give the text in UTF-8\n")
    chat = [allmlp, "chat", str(run), "--max-new-tokens", "3", "--seed", "0"]
    result = subprocess.run(chat, input=b"he\nhe\xffl\nwo\n", capture_output=True, timeout=120)
    first_line_only = subprocess.run(chat, input=b"he\n", capture_output=True, timeout=120)
    assert result.returncode == 2 and result.stdout == first_line_only.stdout  # nothing after the bad line
    assert result.stderr.decode() == ("allmlp chat: error: input line 2 is not UTF-8 text (byte 0xff at byte 3); "
                                      "give the text in UTF-8\n")


def test_chat_warnings_are_one_clean_line_each_time(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("hi?\nhe?\n"))
    assert main(["chat", str(saved_run(tmp_path)), "--unknown", "drop", "--max-new-tokens", "3"]) == 0
    assert capsys.readouterr().err.splitlines() == ["allmlp chat: warning: dropping 2 unknown characters: '?', 'i'",
                                                    "allmlp chat: warning: dropping 1 unknown characters: '?'"]


def test_generate_and_chat_take_a_file_inside_the_run_folder(tmp_path, capsys, monkeypatch):
    weights = saved_run(tmp_path) / "model.safetensors"
    assert main(["generate", str(weights), "--prompt", "he", "--max-new-tokens", "4", "--seed", "0"]) == 0
    assert capsys.readouterr().out.startswith("he")
    monkeypatch.setattr(sys, "stdin", io.StringIO("wo\n"))
    assert main(["chat", str(weights), "--max-new-tokens", "4", "--seed", "0"]) == 0
    assert len(capsys.readouterr().out) == 4 + 1


def test_a_tokenizer_from_another_run_is_one_line_error(tmp_path, capsys):
    run = saved_run(tmp_path)
    other = saved_run(tmp_path / "other", text="a different, longer alphabet\n")
    (run / "tokenizer.json").write_bytes((other / "tokenizer.json").read_bytes())
    assert main(["generate", str(run), "--prompt", "a"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == (f"allmlp generate: error: {run / 'tokenizer.json'}: 17 characters, "
                                                   "but the model's vocabulary has 9; the tokenizer is not this run's\n")
