"""Sampling from any character language model through its protocol alone; `allmlp generate` and `allmlp chat`."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Generator, Iterator

import torch
import torch.nn as nn

DEFAULT_MAX_NEW_TOKENS = 200


def pad_id(tokenizer) -> int:
    """The id that fills a short context: the boundary (line data), else a newline or space, else id 0."""
    if tokenizer.boundary_id is not None:
        return tokenizer.boundary_id
    for char in ("\n", " "):
        if char in tokenizer.stoi:
            return tokenizer.stoi[char]
    return 0


def start_ids(tokenizer, prompt_ids: list[int]) -> list[int]:
    """The history generation starts from: line data always begins with the boundary; an empty prompt is a newline."""
    if tokenizer.boundary_id is not None and (not prompt_ids or prompt_ids[0] != tokenizer.boundary_id):
        return [tokenizer.boundary_id] + prompt_ids
    return prompt_ids or [pad_id(tokenizer)]


def model_input(model: nn.Module, tokenizer, history: list[int]) -> torch.Tensor:
    """The (1, T) ids the model sees: the last chars of `history` (of the current line), padded as in training."""
    T, kind = int(model.context_length), getattr(model, "lm_kind", "window")
    boundary = tokenizer.boundary_id
    if boundary is not None and boundary in history:
        last = len(history) - 1 - history[::-1].index(boundary)
        history = history[last:]  # training never shows a model two lines in one context
    pad = pad_id(tokenizer)
    if kind == "causal":
        ids = history[-int(getattr(model, "receptive_field", T)):]  # weights by lag: every char that still counts
    elif kind == "centered":
        # The char to guess sits in the middle: the left half is the history, the right half padding.
        middle = T // 2
        left = history[-middle:] if middle else []
        ids = [pad] * (middle - len(left)) + left + [pad] * (T - middle)
    else:
        ids = history[-T:]
        ids = [pad] * (T - len(ids)) + ids
    device = next(model.parameters()).device
    return torch.tensor([ids], dtype=torch.long, device=device)


def next_char_logits(model: nn.Module, tokenizer, history: list[int]) -> torch.Tensor:
    """Logits (V,) of the char that follows `history`, for window, centered or causal models."""
    logits = model(model_input(model, tokenizer, history))
    return (logits[0, -1] if logits.ndim == 3 else logits[0]).float()


class FullRecompute:
    """Next-char logits by running the model on its whole input window for every char."""

    def __init__(self, model: nn.Module, tokenizer):
        self.model, self.tokenizer, self.history = model, tokenizer, []

    def extend(self, ids: list[int]) -> None:
        """Append chars to the text so far."""
        self.history.extend(ids)

    def logits(self) -> torch.Tensor:
        """Logits (V,) of the char after the text so far."""
        return next_char_logits(self.model, self.tokenizer, self.history)


class IncrementalLogits:
    """Next-char logits through the model's `init_state` / `step` hooks: each char costs one step, not a window.

    Gives what FullRecompute gives: the state restarts at a line boundary, as `model_input` cuts the text there.
    """

    def __init__(self, model: nn.Module, tokenizer):
        self.model, self.boundary = model, tokenizer.boundary_id
        self.device = next(model.parameters()).device
        self.state, self.pending, self.last = model.init_state(1), [], None

    def extend(self, ids: list[int]) -> None:
        """Append chars to the text so far (stepped through when the next logits are asked for)."""
        self.pending.extend(ids)

    def logits(self) -> torch.Tensor:
        """Logits (V,) of the char after the text so far."""
        for char_id in self.pending:
            if char_id == self.boundary:
                self.state = self.model.init_state(1)
            step_ids = torch.tensor([char_id], dtype=torch.long, device=self.device)
            self.last, self.state = self.model.step(step_ids, self.state)
        self.pending = []
        return self.last[0].float()


def logits_source(model: nn.Module, tokenizer, full_recompute: bool = False) -> FullRecompute | IncrementalLogits:
    """The incremental path when the model has the `init_state` / `step` hooks (unless `full_recompute`)."""
    incremental = hasattr(model, "init_state") and hasattr(model, "step") and not full_recompute
    return IncrementalLogits(model, tokenizer) if incremental else FullRecompute(model, tokenizer)


def sample_id(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
              generator: torch.Generator | None = None) -> int:
    """One id from logits (V,): greedy at temperature 0, else softmax(logits / T) restricted to top-k / top-p."""
    if temperature <= 0:
        return int(logits.argmax())
    logits = logits / temperature
    if top_k is not None and 0 < top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0 < top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= top_p  # keep the smallest set reaching top_p (>= 1 id)
        logits = logits.scatter(0, order, sorted_logits.masked_fill(drop, float("-inf")))
    probs = logits.softmax(-1).cpu()
    return int(torch.multinomial(probs, 1, generator=generator))


def seeded_generator(seed: int | None) -> torch.Generator:
    """A CPU generator: reproducible with a seed, freshly seeded without one."""
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def check_sampling(max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None) -> None:
    """One-line errors for sampling settings out of range."""
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


@torch.no_grad()
def stream_text(model: nn.Module, tokenizer, prompt: str = "", max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                seed: int | None = None, unknown: str = "error",
                generator: torch.Generator | None = None, full_recompute: bool = False) -> Iterator[str]:
    """Yield the chars generated after `prompt`, one at a time (unknown prompt chars: "error" or "drop").

    Models with `init_state` / `step` hooks generate incrementally (the same logits, far less work per char);
    `full_recompute=True` runs the whole window for every char instead (tests, benchmarks). With the byte
    tokenizer a char is yielded once its bytes are complete; an invalid sequence yields U+FFFD.
    """
    check_sampling(max_new_tokens, temperature, top_k, top_p)
    history = start_ids(tokenizer, tokenizer.encode(prompt, unknown=unknown))
    if generator is None:
        generator = seeded_generator(seed)
    was_training = model.training
    model.eval()
    decoder = tokenizer.stream_decoder()  # bytes: a multi-byte char is yielded once complete
    try:
        source = logits_source(model, tokenizer, full_recompute)
        source.extend(history)
        for _ in range(max_new_tokens):
            next_id = sample_id(source.logits(), temperature, top_k, top_p, generator)
            source.extend([next_id])
            text = decoder.step(next_id)
            if text:
                yield text
        if tail := decoder.flush():
            yield tail
    finally:
        model.train(was_training)


def generate_text(model: nn.Module, tokenizer, prompt: str = "", max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                  temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                  seed: int | None = None, unknown: str = "error", full_recompute: bool = False) -> str:
    """The text generated after `prompt` (without the prompt); `full_recompute` as in stream_text."""
    return "".join(stream_text(model, tokenizer, prompt, max_new_tokens, temperature, top_k, top_p, seed, unknown,
                               full_recompute=full_recompute))


# The language-interpolation seed's names for the same settings (`topk=2 num_predict=1000 prompts=[...]`).
KEY_ALIASES = {"topk": "top_k", "top_k": "top_k", "topp": "top_p", "top_p": "top_p", "num_predict": "max_new_tokens",
               "max_new_tokens": "max_new_tokens", "temperature": "temperature", "seed": "seed",
               "prompts": "prompts", "prompt": "prompts",
               "text": "prompts", "data.reapply": "reapply"}  # the seed's gbm and cellular-automaton scripts
# What each setting's value must be: (type, words for the error message).
SETTING_TYPES = {"top_k": (int, "a whole number"), "top_p": (float, "a number"),
                 "max_new_tokens": (int, "a whole number"), "temperature": (float, "a number"),
                 "seed": (int, "a whole number"), "reapply": (int, "a whole number")}


def split_prompt_list(text: str) -> list[str]:
    """Prompts from a seed-style `[a, b]` / `["Who are you?"]` list (quotes optional), or `[text]` as one prompt."""
    inner = text.strip()[1:-1]
    prompts, current, quote = [], "", None
    for char in inner:
        if quote:
            if char == quote:
                quote = None
            else:
                current += char
        elif char in "\"'" and not current.strip():
            current, quote = "", char
        elif char == ",":
            prompts.append(current.strip())
            current = ""
        else:
            current += char
    if quote:
        raise ValueError(f"prompts={text}: a quote {quote} is never closed")
    if current.strip() or prompts:
        prompts.append(current.strip())
    return prompts


def join_split_lists(items: list[str]) -> list[str]:
    """Rejoin a `key=[a, b]` list that the shell cut into words (`key=[a,` `b]`) into one item."""
    joined: list[str] = []
    for item in items:
        open_list = joined and joined[-1].partition("=")[2].startswith("[") and not joined[-1].endswith("]")
        if open_list:
            joined[-1] += " " + item
        else:
            joined.append(item)
    return joined


def setting_value(key: str, name: str, text: str):
    """The typed value of a `key=text` setting, or a one-line error naming the key and the value."""
    cast, expected = SETTING_TYPES[name]
    try:
        return cast(text)
    except ValueError:
        raise ValueError(f"{key}={text}: expected {expected}") from None


def apply_key_values(args: argparse.Namespace, items: list[str]) -> None:
    """Fold `key=value` words (seed-style names) into the parsed arguments."""
    for item in join_split_lists(items):
        key, sep, text = item.partition("=")
        if not sep or key not in KEY_ALIASES:
            raise ValueError(f"unexpected argument {item!r}: use --options or key=value with key one of "
                             f"{', '.join(sorted(KEY_ALIASES))}")
        name = KEY_ALIASES[key]
        if name == "prompts":
            is_list = text.strip().startswith("[") and text.strip().endswith("]")
            args.prompt = (args.prompt or []) + (split_prompt_list(text) if is_list else [text])
        else:
            setattr(args, name, setting_value(key, name, text))


def check_prompt_text(prompt: str, source: str) -> None:
    """A one-line error when `prompt` holds bytes that are not UTF-8 (the shell passes them through as is)."""
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as err:
        code = ord(prompt[err.start])
        byte = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"code point U+{code:04X}"
        raise ValueError(f"{source} is not UTF-8 text ({byte} at character {err.start + 1}); "
                         "give the text in UTF-8") from None


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """The options generate and chat share."""
    parser.add_argument("run", help="run folder written by allmlp train")
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS, help="chars to generate")
    parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy; <1 sharper, >1 flatter")
    parser.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest chars")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus: the likeliest chars up to this mass")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: a fresh one)")
    parser.add_argument("--unknown", choices=["error", "drop"], default=None,
                        help="prompt chars the model never saw (default: the run's data.unknown_chars)")


def load_for_sampling(run: str):
    """(model, cfg, tokenizer) of a text run folder, or a one-line error when it is not a language model."""
    from .checkpoint import load_run

    model, cfg, tokenizer = load_run(run)
    if tokenizer is None or not hasattr(model, "context_length"):
        raise ValueError(f"{run} is not a character language model run (no tokenizer.json or context_length)")
    return model, cfg, tokenizer  # load_run checked the tokenizer against the model's vocabulary


# A centered model guesses a char from both sides, so it has no "next" char to stream: it continues a prompt the
# seed's way, rewriting the whole text DEFAULT_REAPPLY times (the seed's data.reapply) while it grows at both ends.
DEFAULT_REAPPLY = 10
AUTOMATON_GROW = 2


def run_automaton(model: nn.Module, tokenizer, prompts: list[str], args: argparse.Namespace) -> int:
    """`generate` for a centered model: each prompt, then its final pass (every pass with --show-steps), aligned
    so that the prompt's chars stay in their columns."""
    from .automaton import reapply_passes

    times = DEFAULT_REAPPLY if args.reapply is None else args.reapply
    if args.reapply is None:
        print(f"centered model: {times} automaton passes over the prompt, growing {AUTOMATON_GROW} chars at each "
              "end per pass (--reapply N, --show-steps)", file=sys.stderr)
    for number, prompt in enumerate(prompts):
        if number:
            print("-" * 40)
        seed = None if args.seed is None else args.seed + number
        rows = [(0, prompt), *enumerate(reapply_passes(model, tokenizer, prompt, times, args.top_k or 1, seed,
                                                       AUTOMATON_GROW), 1)]  # (pass, text), the prompt first
        shown = rows if args.show_steps or times == 0 else [rows[0], rows[-1]]  # the prompt, then the last pass
        for step, text in shown:
            indent = " " * ((times - step) * AUTOMATON_GROW)  # pass k has (times - k) * grow fewer chars each side
            print(f"{step:>3} | {indent}{text}" if args.show_steps else indent + text)
    return 0


def generate_main(argv: list[str]) -> int:
    """`allmlp generate RUN --prompt ...`: stream generated text to stdout, one block per prompt."""
    parser = argparse.ArgumentParser(prog="allmlp generate", description="Generate text from a trained language "
                                     "model (an empty prompt starts a fresh line). Also takes key=value "
                                     "words: topk=2 num_predict=1000 prompts=[Who are you?, Hello].")
    add_sampling_arguments(parser)
    parser.add_argument("--prompt", action="append", help="text to continue (repeat for several prompts)")
    parser.add_argument("--reapply", type=int, default=None, metavar="N",
                        help=f"centered models: passes of the automaton over the prompt, which grows by "
                             f"{AUTOMATON_GROW} chars at each end per pass (default {DEFAULT_REAPPLY})")
    parser.add_argument("--show-steps", action="store_true", help="centered models: print the text after every pass")
    args, extra = parser.parse_known_args(argv)
    apply_key_values(args, extra)
    for number, prompt in enumerate(args.prompt or [], start=1):
        check_prompt_text(prompt, f"prompt {number}")
    model, cfg, tokenizer = load_for_sampling(args.run)
    unknown = args.unknown or cfg.data.unknown_chars
    prompts = args.prompt or [""]
    if getattr(model, "lm_kind", None) == "centered":
        return run_automaton(model, tokenizer, prompts, args)
    for flag, given in (("--reapply", args.reapply is not None), ("--show-steps", args.show_steps)):
        if given:
            raise ValueError(f"{flag} needs a centered model; {args.run} holds a {model.lm_kind} model")
    for prompt in prompts if unknown == "error" else []:  # every prompt is checked before any text is written
        tokenizer.encode(prompt)
    for number, prompt in enumerate(prompts):
        if number:
            print("\n" + "-" * 40)
        sys.stdout.write(prompt)
        seed = None if args.seed is None else args.seed + number
        for char in stream_text(model, tokenizer, prompt, args.max_new_tokens, args.temperature, args.top_k,
                                args.top_p, seed, unknown):
            sys.stdout.write(char)
            sys.stdout.flush()
        print()
    return 0


# /command: (settings key, type, argument, what it sets); also the order /settings shows them in.
CHAT_SETTINGS = {"/temperature": ("temperature", float, "X", "sampling temperature (0 = greedy)"),
                 "/top_k": ("top_k", int, "K", "sample among the K likeliest chars (0 = off)"),
                 "/top_p": ("top_p", float, "P", "nucleus sampling mass (0 or 1 = off)"),
                 "/length": ("max_new_tokens", int, "N", "chars generated per answer"),
                 "/seed": ("seed", int, "N", "restart sampling from this seed")}
CHAT_SHORT_NAMES = {"/temp": "/temperature", "/topk": "/top_k", "/topp": "/top_p", "/len": "/length"}
CHAT_HELP = "\n".join(
    ["commands:"]
    + [f"  {f'{name} {argument}':<16}{text}" + "".join(
        f" (or {short})" for short, long in CHAT_SHORT_NAMES.items() if long == name)
       for name, (_, _, argument, text) in CHAT_SETTINGS.items()]
    + ["  /settings       show the current settings", "  /help           this text",
       "  /quit           leave (Ctrl-D too); Ctrl-C stops an answer, Ctrl-C twice at the prompt leaves"])


def settings_text(settings: dict) -> str:
    """The chat settings, one per line, named as the commands that change them."""
    shown = {"temperature": f"{settings['temperature']:g}" + (" (greedy)" if settings["temperature"] == 0 else ""),
             "top_k": "off" if settings["top_k"] is None else str(settings["top_k"]),
             "top_p": "off" if settings["top_p"] is None else f"{settings['top_p']:g}",
             "length": f"{settings['max_new_tokens']} chars per answer",
             "seed": "none (fresh randomness)" if settings["seed"] is None else str(settings["seed"])}
    return "\n".join(f"{name:<12} {value}" for name, value in shown.items())


def chat_command(line: str, settings: dict) -> str | None:
    """Apply a /command to the chat settings: a message to show, None to quit; ValueError for a bad command."""
    name, _, value = line.strip().partition(" ")
    name = CHAT_SHORT_NAMES.get(name, name)
    if name in ("/quit", "/exit", "/q"):
        return None
    if name == "/help":
        return CHAT_HELP
    if name == "/settings":
        return settings_text(settings)
    if name not in CHAT_SETTINGS:
        raise ValueError(f"unknown command {name!r}; /help lists them")
    key, cast, _, _ = CHAT_SETTINGS[name]
    try:
        parsed = cast(value.strip())
    except ValueError:
        raise ValueError(f"{name} needs {'a whole number' if cast is int else 'a number'}, got {value!r}") from None
    if key in ("top_k", "top_p") and parsed in (0, 1.0 if key == "top_p" else 0):
        parsed = None
    trial = {k: v for k, v in {**settings, key: parsed}.items() if k != "seed"}
    check_sampling(**trial)
    settings[key] = parsed
    return f"{name[1:]} = {'off' if parsed is None else parsed}"


class ChatInterrupts:
    """Ctrl-C in an interactive chat: while a line is read it interrupts the read (KeyboardInterrupt); at any other
    moment (an answer streaming, a command running) it is only noted, so the answer stops between two chars."""

    def __init__(self, active: bool):
        self.active, self.reading, self.pending = active, False, False

    def __enter__(self) -> "ChatInterrupts":
        if self.active:
            self.previous = signal.signal(signal.SIGINT, self._on_interrupt)
        return self

    def __exit__(self, *exc) -> None:
        if self.active:
            signal.signal(signal.SIGINT, self.previous)

    def _on_interrupt(self, signum, frame) -> None:
        if self.reading:
            raise KeyboardInterrupt
        self.pending = True

    def take(self) -> bool:
        """Whether Ctrl-C was pressed since the last call."""
        pending, self.pending = self.pending, False
        return pending


def decode_input_line(raw: bytes, number: int) -> str:
    """One line of chat input as text, or a one-line error when it is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"input line {number} is not UTF-8 text (byte 0x{raw[err.start]:02x} at byte "
                         f"{err.start + 1}); give the text in UTF-8") from None


def read_chat_line(stdin, stdout, interactive: bool, number: int) -> str | None:
    """The next line the user typed or piped (without its newline), None at end of input."""
    if interactive and stdin is sys.stdin and stdout is sys.stdout:
        try:
            line = input("> ")  # line editing and history when readline is available
        except EOFError:
            stdout.write("\n")
            return None
        except UnicodeDecodeError as err:
            raise ValueError(f"input line {number} is not UTF-8 text (byte 0x{err.object[err.start]:02x}); "
                             "give the text in UTF-8") from None
        check_prompt_text(line, f"input line {number}")
        return line
    if interactive:
        stdout.write("> ")
        stdout.flush()
    buffer = getattr(stdin, "buffer", None)
    if buffer is not None:
        raw = buffer.readline()
        return decode_input_line(raw, number).rstrip("\r\n") if raw else None
    line = stdin.readline()
    return line.rstrip("\r\n") if line else None


def chat_main(argv: list[str], stdin=None, stdout=None) -> int:
    """`allmlp chat RUN`: read prompts (interactive or piped), answer each with generated text; /help for commands.

    Interactive: Ctrl-C stops an answer, Ctrl-C twice at the prompt, Ctrl-D or /quit leave (exit 0). Piped: the
    first bad line (unknown command, bad value, unknown chars) is a one-line error with exit code 2.
    """
    parser = argparse.ArgumentParser(prog="allmlp chat", formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Chat with a trained language model: each line you enter is "
                                     "continued by the model (an empty line starts a fresh one).\n\n" + CHAT_HELP)
    add_sampling_arguments(parser)
    args = parser.parse_args(argv)
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    model, cfg, tokenizer = load_for_sampling(args.run)
    settings = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_k": args.top_k,
                "top_p": args.top_p, "seed": args.seed}
    check_sampling(args.max_new_tokens, args.temperature, args.top_k, args.top_p)
    unknown = args.unknown or cfg.data.unknown_chars
    generator = seeded_generator(args.seed)
    interactive = stdin.isatty()
    if interactive:
        try:
            import readline  # noqa: F401  (gives input() line editing and history)
        except ImportError:
            pass
        stdout.write(f"{cfg.model.name} (context {model.context_length} chars). Please enter a prompt; /help for "
                     "commands, /quit or Ctrl-D to leave.\n")
    number, interrupted = 0, False
    main_thread = threading.current_thread() is threading.main_thread()
    with ChatInterrupts(active=interactive and main_thread) as interrupts:
        while True:
            number += 1
            try:
                if interrupts.take():  # pressed between two prompts: the same as at the prompt
                    raise KeyboardInterrupt
                interrupts.reading = True
                line = read_chat_line(stdin, stdout, interactive, number)
                interrupts.reading = False
            except KeyboardInterrupt:
                interrupts.reading = False
                if interrupted:
                    stdout.write("\n")
                    break
                stdout.write("\n(Ctrl-C again, Ctrl-D or /quit to leave)\n")
                interrupted = True
                continue
            except ValueError as err:
                interrupts.reading = False
                if not interactive:
                    raise
                stdout.write(f"error: {err}\n")
                continue
            if line is None:
                break
            interrupted = False
            try:
                if line.startswith("/"):
                    message = chat_command(line, settings)
                    if message is None:
                        break
                    if line.split()[0] == "/seed":
                        generator = seeded_generator(settings["seed"])
                    stdout.write(message + "\n")
                    continue
                sampling = {k: v for k, v in settings.items() if k != "seed"}
                stream = stream_text(model, tokenizer, line, unknown=unknown, generator=generator, **sampling)
                interrupted = stream_answer(stream, stdout, interrupts)
            except ValueError as err:  # e.g. unknown chars: piped, the run stops (exit 2); interactive, say so
                if not interactive:
                    raise ValueError(f"input line {number}: {err}") from None
                stdout.write(f"error: {err}\n")
    return 0


def stream_answer(stream: Generator[str, None, None], stdout, interrupts: ChatInterrupts) -> bool:
    """Write an answer char by char until it ends or Ctrl-C is pressed (then returns True; the chat goes on)."""
    stopped = False
    for char in stream:
        stdout.write(char)
        stdout.flush()
        if interrupts.take():
            stream.close()  # its `finally` puts the model back in its mode now
            stopped = True
            break
    stdout.write("\n[stopped]\n" if stopped else "\n")
    stdout.flush()
    return stopped
