"""`allmlp chat RUN`: read prompts (interactive or piped) and answer each with generated text; /help for commands."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Generator

from ..generate import check_prompt_text, check_sampling, load_for_sampling, seeded_generator, stream_text
from .common import parser as common_parser
from .generate import add_sampling_arguments


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


def main(argv: list[str], stdin=None, stdout=None) -> int:
    """Read prompts (interactive or piped), answer each with generated text; /help for commands.

    Interactive: Ctrl-C stops an answer, Ctrl-C twice at the prompt, Ctrl-D or /quit leave (exit 0). Piped: the
    first bad line (unknown command, bad value, unknown chars) is a one-line error with exit code 2.
    """
    parser = common_parser("chat", "Chat with a trained language model: each line you enter is continued by the "
                                   "model (an empty line starts a fresh one).\n\n" + CHAT_HELP)
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
