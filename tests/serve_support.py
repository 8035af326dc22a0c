"""What the `allmlp serve` tests share: one tiny trained LM run and one tiny image run, and a real uvicorn server.

The runs are made once per test session (a handful of training steps each); the server listens on a free port of
127.0.0.1 in a thread and is always stopped at the end.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import threading
import time
from pathlib import Path

import pytest

from allmlp.cli import main
from conftest import write_tiny_fashion

WORDS = "to be or not that is the question whether tis nobler in mind ROMEO JULIET love and night sweet day".split()
LM_RUN, IMAGE_RUN = "text/tiny_lm", "images/tiny_mixer"


def write_text(path: Path, lines: int = 300) -> Path:
    """Lines of random words over a small alphabet (no x, z or accented letters: those are unknown chars)."""
    rng = random.Random(0)
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(8)) for _ in range(lines)) + "\n")
    return path


def train_lm(run_dir: Path, text: Path) -> Path:
    """A causal Mixer trained for a few steps on `text`."""
    assert main(["train", "shakespeare_mixer", "data.name=text", f"data.path={text}", "train.max_steps=6",
                 "train.eval_interval=0", "train.log_interval=2", "train.checkpoint_interval=0",
                 "train.progress=false", "model.embedding_dim=16", "model.depth=1", "model.channels_mlp_dim=16",
                 "model.num_heads=2", "data.context_length=16", "data.eval_targets=512", "data.batch_size=8",
                 "--run-dir", str(run_dir)]) == 0
    return run_dir


def train_image(run_dir: Path, fashion: Path) -> Path:
    """A tiny vision Mixer trained for a few steps on Fashion-MNIST-named files of a 4-class toy task."""
    assert main(["train", "fashion_mixer", f"data.path={fashion}", "train.max_steps=4", "train.eval_interval=0",
                 "train.log_interval=2", "train.checkpoint_interval=0", "train.progress=false",
                 "data.batch_size=32", "model.depth=1", "model.hidden_dim=16", "model.tokens_mlp_dim=8",
                 "model.channels_mlp_dim=16", "model.patch_size=7", "--run-dir", str(run_dir)]) == 0
    return run_dir


@pytest.fixture(scope="session")
def serve_runs(tmp_path_factory) -> Path:
    """RUNS_DIR with text/tiny_lm and images/tiny_mixer, plus a symlink `escape` to a run folder outside it."""
    tmp = tmp_path_factory.mktemp("serve")
    root = tmp / "runs"
    train_lm(root / LM_RUN, write_text(tmp / "text.txt"))
    train_image(root / IMAGE_RUN, write_tiny_fashion(tmp / "fashion", train=256, test=64))
    outside = shutil.copytree(root / LM_RUN, tmp / "outside_run")
    (root / "escape").symlink_to(outside, target_is_directory=True)
    return root


class ServerThread:
    """uvicorn serving `app` on a free port of 127.0.0.1, in a daemon thread."""

    def __init__(self, app):
        import uvicorn

        from allmlp.cli.serve import bound_socket

        self.app = app
        self.socket = bound_socket("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def start(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.socket.close()
        assert not self.thread.is_alive(), "the test server did not stop"


@contextlib.contextmanager
def running_server(root: Path, **options):
    """A server over `root` (create_app options passed on) for the length of the `with` block."""
    from allmlp.serve import create_app

    server = ServerThread(create_app(root, **options)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def server(serve_runs):
    """The server the tests share: defaults, over serve_runs."""
    with running_server(serve_runs) as running:
        yield running
