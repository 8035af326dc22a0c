"""The README runs itself: every command in its console blocks (and docs/), with a tiny budget on tiny data.

Commands run in README order in one sandbox folder (so `allmlp eval runs/X` finds what `allmlp train` made).
Each `allmlp train` gets tiny-budget overrides and a `data.path` to tiny data of its preset's kind; benchmark
scripts run with `--help`. What cannot run here is listed with the reason, never skipped silently.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from allmlp.cli import main
from allmlp.config import load_preset, preset_names

ROOT = Path(__file__).parents[1]


def markdown_files() -> list[Path]:
    """The README, then the docs/ pages in the order the README links them (a page's commands may use the runs an
    earlier page made), then any page it does not link."""
    linked = [ROOT / link for link in re.findall(r"\]\((docs/[\w./-]+\.md)\)", (ROOT / "README.md").read_text())]
    pages = list(dict.fromkeys(path for path in linked if path.is_file()))
    return [ROOT / "README.md", *pages, *sorted(set((ROOT / "docs").rglob("*.md")) - set(pages))]


MARKDOWN = markdown_files()
TINY_BUDGET = ["train.max_steps=3", "train.max_minutes=0", "train.max_epochs=0", "train.eval_interval=0",
               "train.checkpoint_interval=0", "train.log_interval=1", "train.progress=false", "data.batch_size=8",
               "data.eval_batch_size=64", "data.eval_targets=256", "data.val_lines=0", "data.test_lines=0",
               "data.val_size=16"]

# Commands that cannot run in a test here, each with why (matched as regular expressions).
NOT_HERE = {
    r"^make (demo|test)": "the set-up commands themselves (CI runs `make test`; `make demo` needs the real data)",
    r"^allmlp data fetch": "downloads a real data set; tests use tiny data they make",
    r"accelerator=cuda": "needs a GPU",
    r"^allmlp finetune --weights": "needs pretrained weights downloaded from the internet",
    r"^for |\$": "a shell loop over the CIFAR-10 presets; the same `allmlp train`/`eval` lines run one by one above",
    r"^tensorboard": "starts the TensorBoard server",
}


def commands_in(path: Path) -> list[str]:
    """`allmlp ...`, `python benchmarks/...` and `make ...` lines of console/bash blocks (continuations joined)."""
    found = []
    for block in re.findall(r"```(?:console|bash|sh|shell)\n(.*?)```", path.read_text(), re.S):
        block = block.replace("\\\n", " ")
        for line in block.splitlines():
            line = line.strip()
            if line.startswith(("allmlp ", "python benchmarks/", "make ", "for ", "tensorboard ")):
                found.append(_strip_comment(line))
    return found


def _strip_comment(line: str) -> str:
    """The line without a trailing `# comment` (a # inside quotes stays)."""
    lexer = shlex.shlex(line, posix=True)
    lexer.whitespace_split, lexer.commenters = True, "#"
    words = list(lexer)
    return shlex.join(words)


def _preset_kind(name: str) -> str:
    data = (load_preset(name).get("data") or {}) if name in preset_names() else {}
    return str(data.get("name", "fashion_mnist"))


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    """A folder with tiny data of every kind a preset reads, and a text file named as the README's examples."""
    from conftest import write_tiny_cifar, write_tiny_fashion

    root = tmp_path_factory.mktemp("readme")
    write_tiny_fashion(root / "tiny_fashion", train=256, test=64)
    write_tiny_cifar(root / "tiny_cifar", per_train_batch=16, test=16)
    names = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper", "evelyn", "abigail"]
    (root / "tiny_names.txt").write_text("\n".join(names * 20) + "\n")
    play = "ROMEO: To be, or not to be, that is the question.\nJULIET: What light through yonder window breaks?\n"
    (root / "tiny_text.txt").write_text(play * 40)
    shutil.copy(root / "tiny_text.txt", root / "mybook.txt")
    return root


def tiny_data(kind: str, root: Path) -> list[str]:
    """The `data.path` override of tiny data for a preset whose data set is `kind`."""
    if kind in ("fashion_mnist", "mnist"):
        return [f"data.path={root / 'tiny_fashion'}"]
    if kind == "cifar10":
        return [f"data.path={root / 'tiny_cifar'}"]
    if kind in ("names", "words"):
        return [f"data.path={root / 'tiny_names.txt'}"]
    return [f"data.path={root / 'tiny_text.txt'}"]


def with_tiny_budget(words: list[str], root: Path) -> list[str]:
    """`allmlp train ...` words with tiny data and budget appended (a data.path the line gives is kept)."""
    preset = words[2]
    extra = [] if any(w.startswith("data.path=") for w in words) else tiny_data(_preset_kind(preset), root)
    return [*words, *extra, *TINY_BUDGET]


def make_placeholder_runs(words: list[str], root: Path) -> None:
    """`runs/a`, `runs/blocks_*`: the README's names for runs of your own; copies of a run made earlier."""
    source = root / "runs" / "fashion_mixer"
    for word in words:
        if word.startswith("runs/") and not (root / word).exists() and source.exists():
            for name in sorted({word.replace("*", str(d)) for d in (1, 2)}):
                if not (root / name).exists():
                    shutil.copytree(source, root / name)


ALL = [(path.name, line) for path in MARKDOWN for line in commands_in(path)]


def test_the_readme_has_commands():
    assert len(ALL) > 20
    pages = {source for source, _ in ALL}
    assert {"README.md", "vision.md", "language-models.md", "inspecting.md", "scaling.md", "serving.md"} <= pages, pages


def test_every_documented_command_runs(sandbox, monkeypatch, capsys):
    """All commands in order in one sandbox; a failure names the command and its error."""
    monkeypatch.chdir(sandbox)
    monkeypatch.setenv("ALLMLP_CACHE", str(sandbox / "cache"))  # `allmlp data prepare` writes into the cache
    skipped, failures = [], []
    for source, line in ALL:
        reason = next((why for pattern, why in NOT_HERE.items() if re.search(pattern, line)), None)
        if reason:
            skipped.append(f"{source}: {line}  ({reason})")
            continue
        words = shlex.split(line)
        if words[0] == "python":  # benchmarks: their own --help (the benchmarks' --smoke runs in its own test)
            done = subprocess.run([sys.executable, words[1], "--help"], cwd=ROOT, capture_output=True, text=True)
            if done.returncode != 0:
                failures.append(f"{line}: {done.stderr.strip()[-300:]}")
            continue
        words = [w for w in words if w != "\\"]
        if words[1] == "train":
            words = with_tiny_budget(words, sandbox)
        if words[1] == "report":
            make_placeholder_runs(words, sandbox)
            words = _expand_globs(words, sandbox)
        if words[1] == "serve":  # a server runs until stopped: started, asked for its runs, stopped with Ctrl-C
            failure = serve_briefly(words, sandbox)
            if failure:
                failures.append(f"{line}: {failure}")
            continue
        if "train.devices=2" in words:  # DDP re-executes the command line: a process of its own
            done = subprocess.run([sys.executable, "-m", "allmlp", *words[1:]], cwd=sandbox, capture_output=True,
                                  text=True, timeout=300)
            if done.returncode != 0:
                failures.append(f"{line}: exit {done.returncode}: {done.stderr.strip()[-300:]}")
            continue
        monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # `allmlp chat` reads to the end of its input
        capsys.readouterr()
        try:
            code = main(words[1:])
        except SystemExit as stop:
            code = stop.code
        err = capsys.readouterr().err.strip()
        if code not in (0, None):
            failures.append(f"{line}: exit {code}: {err[-300:]}")
    print("not run here:\n  " + "\n  ".join(skipped))
    assert not failures, "\n".join(failures)
    assert len(skipped) < len(ALL) / 3


def _expand_globs(words: list[str], root: Path) -> list[str]:
    """Shell globs of the line (`runs/blocks_*`) expanded in the sandbox, as a shell would."""
    out = []
    for word in words:
        matches = sorted(str(p.relative_to(root)) for p in root.glob(word)) if "*" in word else []
        out.extend(matches or [word])
    return out


def serve_briefly(words: list[str], root: Path) -> str | None:
    """Run `allmlp serve ...` on a free port of 127.0.0.1 until it answers GET /api/runs; what went wrong, or None."""
    import signal

    import httpx

    words = [w for i, w in enumerate(words) if w not in ("--port", "--host") and words[i - 1] not in ("--port",
                                                                                                     "--host")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-m", "allmlp", *words[1:], "--port", "0", "--host", "127.0.0.1"],
                               cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline()
        if " at http://" not in line:
            process.kill()
            return f"did not start: {line}{process.stderr.read()[-300:]}"
        runs = httpx.get(line.split(" at ")[1].split()[0] + "api/runs", timeout=60)
        return None if runs.status_code == 200 and runs.json()["runs"] else f"GET /api/runs: {runs.text[:300]}"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
