"""Text generation in worker threads: a bounded number at once, each stoppable between two characters."""

from __future__ import annotations

import asyncio
import collections
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator


class ServerBusy(RuntimeError):
    """Every generation slot stayed taken for the whole wait."""


@dataclass
class Generation:
    """One answer being generated: what was asked, how far it got, and the flag that stops it."""

    id: str
    run: str
    max_new_tokens: int
    chars: int = 0
    started: float = field(default_factory=time.perf_counter)
    first_char_s: float | None = None
    seconds: float | None = None
    stopped: bool = False
    finished: bool = False
    error: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def public(self) -> dict:
        """The JSON the API shows of it."""
        return {"id": self.id, "run": self.run, "max_new_tokens": self.max_new_tokens, "chars": self.chars,
                "first_char_s": self.first_char_s, "seconds": self.seconds, "stopped": self.stopped,
                "finished": self.finished, "error": self.error}


class Generations:
    """At most `max_concurrent` generations run at once; a request waits up to `wait_s` for a slot, then ServerBusy."""

    def __init__(self, max_concurrent: int = 4, wait_s: float = 2.0, history: int = 100):
        if max_concurrent < 1:
            raise ValueError(f"max generations must be >= 1, got {max_concurrent}")
        self.max_concurrent, self.wait_s = max_concurrent, wait_s
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.active: dict[str, Generation] = {}
        self.recent: collections.deque[Generation] = collections.deque(maxlen=history)

    def take_slot(self) -> None:
        """Block (in a worker thread, not the event loop) until a slot is free, or raise ServerBusy after wait_s."""
        if not self._slots.acquire(timeout=self.wait_s):
            raise ServerBusy(f"the server is busy: {self.max_concurrent} generations are running (the limit, "
                             f"allmlp serve --max-generations); try again in a moment")

    def give_slot(self) -> None:
        """Hand back a slot taken by take_slot that no generation used (the request failed before starting one)."""
        self._slots.release()

    def start(self, run: str, stream: Iterator[str], max_new_tokens: int, emit: Callable[[str | None], None]) -> \
            Generation:
        """Run `stream` in a new thread (a slot must be held), passing each char to `emit`, then None at the end."""
        with self._lock:
            generation = Generation(f"g{next(self._ids)}", run, max_new_tokens)
            self.active[generation.id] = generation
        threading.Thread(target=self._work, args=(generation, stream, emit), name=f"allmlp-{generation.id}",
                         daemon=True).start()
        return generation

    def _work(self, generation: Generation, stream: Iterator[str], emit: Callable[[str | None], None]) -> None:
        try:
            for char in stream:
                if generation.cancel.is_set():
                    generation.stopped = True
                    break
                if generation.first_char_s is None:
                    generation.first_char_s = time.perf_counter() - generation.started
                generation.chars += 1
                emit(char)
        except Exception as err:  # shown to the client as an error event, never as a traceback
            generation.error = f"generation failed: {type(err).__name__}: {err}".splitlines()[0]
        finally:
            stream.close()
            generation.seconds = time.perf_counter() - generation.started
            generation.finished = True
            with self._lock:
                self.active.pop(generation.id, None)
                self.recent.appendleft(generation)
            self._slots.release()
            emit(None)

    def snapshot(self) -> tuple[list[Generation], list[Generation]]:
        """(running, recently finished) generations, copied under the lock."""
        with self._lock:
            return list(self.active.values()), list(self.recent)

    def find(self, generation_id: str) -> Generation | None:
        """The generation with this id, running or recent."""
        with self._lock:
            return self.active.get(generation_id) or next((g for g in self.recent if g.id == generation_id), None)

    def stop_all(self) -> None:
        """Ask every running generation to stop (server shutdown)."""
        with self._lock:
            for generation in self.active.values():
                generation.cancel.set()


class CharChannel:
    """Chars from a worker thread to the event loop. The loop is woken only when the channel was empty, so chars
    that arrive while it is busy sending go out together, and a fast model costs one wake-up per batch, not per char."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self._items: list[str | None] = []
        self._lock = threading.Lock()
        self._ready = asyncio.Event()

    def put(self, char: str | None) -> None:
        """From the worker thread: one char, or None at the end."""
        with self._lock:
            wake = not self._items
            self._items.append(char)
        if wake:
            try:
                self.loop.call_soon_threadsafe(self._ready.set)
            except RuntimeError:  # the loop is closed: the server is shutting down
                pass

    async def take(self) -> list[str | None]:
        """In the event loop: every item that arrived since the last call (waits for at least one; may be empty
        after a late wake-up)."""
        await self._ready.wait()
        with self._lock:
            items, self._items = self._items, []
            self._ready.clear()
        return items
