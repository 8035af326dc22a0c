"""`allmlp chat` in a real pseudo-terminal: Ctrl-C stops an answer, /settings, Ctrl-C twice or Ctrl-D leaves."""

from __future__ import annotations

import os
import pty
import select
import signal
import sys
import time
from pathlib import Path

import pytest

from test_generate import saved_run


class Terminal:
    """A child process on a pseudo-terminal (its controlling terminal): write keys, wait for text on its screen."""

    def __init__(self, argv: list[str]):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the pty is its stdin, stdout, stderr and controlling terminal
            os.execv(argv[0], argv)
        self.screen = ""

    def send(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def interrupt_at_prompt(self) -> None:
        """Ctrl-C once the prompt is up: a signal that lands between the prompt's printing and the read blocking
        waits for the next key, in Python's own REPL too, so give the child time to block before pressing it."""
        self.expect("> ")
        time.sleep(1.0)
        self.send("\x03")

    def expect(self, text: str, timeout: float = 60.0) -> str:
        """Wait until `text` appears after what earlier calls consumed; returns everything up to and including it."""
        deadline = time.monotonic() + timeout
        while text not in self.screen:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._read(remaining):
                raise AssertionError(f"{text!r} never appeared; the terminal shows:\n{self.screen[-2000:]}")
        seen, _, self.screen = self.screen.partition(text)
        return seen + text

    def wait_for_output(self, chars: int, timeout: float = 60.0) -> None:
        """Wait until at least `chars` chars not yet consumed by `expect` are on the screen."""
        deadline = time.monotonic() + timeout
        while len(self.screen) < chars:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._read(remaining):
                raise AssertionError(f"fewer than {chars} chars came; the terminal shows:\n{self.screen[-2000:]}")

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # the child closed the terminal
            return False
        self.screen += data.decode("utf-8", "replace").replace("\r\n", "\n")
        return bool(data)

    def exit_code(self, timeout: float = 30.0) -> int:
        """The child's exit status once it has ended (killed after `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._read(0.1)  # keep draining so the child never blocks on a full terminal
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        raise AssertionError(f"chat did not exit; the terminal shows:\n{self.screen[-2000:]}")


@pytest.fixture
def chat(tmp_path):
    run = saved_run(tmp_path)
    allmlp = str(Path(sys.executable).with_name("allmlp"))
    terminal = Terminal([allmlp, "chat", str(run), "--max-new-tokens", "1000000", "--seed", "0"])
    terminal.expect("Please enter a prompt")
    yield terminal
    try:
        os.kill(terminal.pid, signal.SIGKILL)
        os.waitpid(terminal.pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
    os.close(terminal.fd)


def test_ctrl_c_stops_a_long_answer_and_a_second_one_at_the_prompt_leaves(chat):
    chat.expect("> ")
    chat.send("hello\n")
    chat.expect("hello\n")  # the terminal echoes the line; the answer streams after it
    chat.wait_for_output(50)  # a million chars take minutes: the answer is still streaming
    chat.send("\x03")
    chat.expect("[stopped]")
    chat.expect("> ")
    chat.send("/settings\n")
    settings = chat.expect("> ")
    for line in ("temperature  1", "top_k        off", "top_p        off", "length       1000000 chars per answer",
                 "seed         0"):
        assert line in settings, settings
    chat.send("/temp 0\n")
    chat.expect("temperature = 0.0")
    chat.interrupt_at_prompt()
    chat.expect("(Ctrl-C again, Ctrl-D or /quit to leave)")
    chat.interrupt_at_prompt()
    assert chat.exit_code() == 0


@pytest.mark.parametrize("keys", ["\x04", "/quit\n"])
def test_ctrl_d_or_quit_leave_with_exit_code_0(chat, keys):
    chat.expect("> ")
    chat.send(keys)
    assert chat.exit_code() == 0


def test_interactive_errors_keep_the_chat_going(chat):
    chat.expect("> ")
    chat.send("/bogus\n")
    assert "error: unknown command '/bogus'; /help lists them" in chat.expect("> ")
    chat.send("/help\n")
    assert "/settings" in chat.expect("> ")
    chat.send("/quit\n")
    assert chat.exit_code() == 0


def test_ctrl_c_at_the_prompt_right_after_stopping_an_answer_leaves(chat):
    chat.expect("> ")
    chat.send("wor\n")
    chat.expect("wor\n")
    chat.wait_for_output(50)
    chat.send("\x03")
    chat.expect("[stopped]")
    chat.interrupt_at_prompt()
    assert chat.exit_code() == 0
