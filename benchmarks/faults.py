"""Kill fuzz: training killed (SIGKILL) or interrupted (SIGINT) at random instants resumes bitwise equal.

    python benchmarks/faults.py [--kills 200] [--per-chain 25] [--seed 0] [--smoke]

For each model family a reference training runs uninterrupted; then chains of fresh processes train the same
config into one run folder, each killed at a random instant and the next one resuming (`--resume`) where the
last checkpoint left off (`train.checkpoint_interval=1`, dropout on), until a last process runs to the end. A
chain is bitwise equal when its final weights equal the reference's byte for byte; every kill of an equal chain
counts as an exact resume. Single-process families fork from this process (no import cost per kill); the DDP
family (2 processes) starts real `allmlp train` processes. Then the hostile-input tests run and are counted.
Writes benchmarks/results/faults.json: {"kills", "bitwise_equal", "hostile_inputs", "tracebacks", "payloads_run"}.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from common import add_common_arguments, output_path, smoke_fashion, smoke_names, write_results
from safetensors.torch import load_file

# Tiny trainings with dropout, one checkpoint per step; {data} is the folder of tiny data the fuzz writes.
FAMILIES = {
    "mixer": ["fashion_mixer", "data.path={images}", "data.batch_size=32", "model.hidden_dim=16", "model.depth=2",
              "model.patch_size=7", "model.tokens_mlp_dim=8", "model.channels_mlp_dim=32", "model.dropout=0.2",
              "data.augment=true", "data.val_size=32"],
    "causal_mixer": ["names_causal_mixer", "data.path={text}", "data.val_lines=20", "data.test_lines=20",
                     "data.batch_size=16", "model.embedding_dim=16", "model.depth=2", "model.channels_mlp_dim=32",
                     "model.dropout=0.2"],
    "bengio": ["names_bengio", "data.path={text}", "data.val_lines=20", "data.test_lines=20", "data.batch_size=32",
               "model.hidden_dim=32"],
}
COMMON = ["train.max_minutes=0", "train.eval_interval=0", "train.checkpoint_interval=1", "train.progress=false", "train.log_interval=5",
          "train.threads=1", "optim.warmup_steps=5"]


def write_tiny_data(folder: Path) -> dict[str, Path]:
    """Fashion-MNIST-named IDX files of a small task, and a file of names (the smoke data of every benchmark)."""
    folder.mkdir(parents=True, exist_ok=True)
    return {"images": smoke_fashion(folder, train=256, test=64), "text": smoke_names(folder, count=300)}


def train_argv(family: str, data: dict[str, Path], run_dir: Path, steps: int, resume: bool,
               extra: list[str] = ()) -> list[str]:
    """`allmlp train` arguments of one process of a chain."""
    words = [w.format(**data) for w in FAMILIES[family]]
    return ["train", *words, *COMMON, f"train.max_steps={steps}", *extra, "--run-dir", str(run_dir),
            *(["--resume"] if resume else [])]


def preload() -> None:
    """Import what a training imports, once, so that forked children start training at once."""
    import lightning.fabric  # noqa: F401
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401

    import allmlp.cli.train  # noqa: F401
    import allmlp.engine  # noqa: F401
    import allmlp.tasks.classification  # noqa: F401
    import allmlp.tasks.language  # noqa: F401
    import allmlp.viz  # noqa: F401


def fork_cli(argv: list[str], log: Path) -> int:
    """Run `allmlp ARGV` in a forked child (a fresh process that skips the imports); returns its pid."""
    # SIGINT is held back across the fork: one that lands in a library's at-fork hook would be swallowed there
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    pid = os.fork()
    if pid:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        return pid
    code = 1  # the child: output to `log`, exit with the command's code, never return into the parent
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # pytest may have swapped sys.stdout
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        from allmlp.cli import main

        code = main(argv)
    except BaseException:  # a kill by SIGINT before the engine's handler is up: Python's KeyboardInterrupt
        code = 130
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def spawn_cli(argv: list[str], log: Path) -> subprocess.Popen:
    """Run `allmlp ARGV` as a new Python process (DDP re-executes its command line, so it cannot be forked)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "allmlp", *argv], stdout=out, stderr=out, env=env,
                                start_new_session=True)


class Child:
    """A training process, forked or spawned, that can be signalled and waited for."""

    def __init__(self, argv: list[str], log: Path, fork: bool):
        self.popen = None if fork else spawn_cli(argv, log)
        self.code: int | None = None
        self.pid = fork_cli(argv, log) if fork else self.popen.pid

    def signal(self, signum: int) -> None:
        """Send `signum` (to the whole process group when spawned: DDP's second rank too)."""
        if self.code is not None:  # reaped: its pid may belong to another process by now
            return
        try:
            if self.popen is not None:
                os.killpg(self.pid, signum)
            else:
                os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def poll(self) -> int | None:
        """The exit code, or None while running."""
        if self.popen is not None:
            return self.popen.poll()
        if self.code is None:  # a reaped child cannot be asked again: keep its code
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            self.code = None if pid == 0 else os.waitstatus_to_exitcode(status)
        return self.code

    def wait(self, timeout: float) -> int:
        """Wait for the exit code (SIGKILL after `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while (code := self.poll()) is None:
            if time.monotonic() > deadline:
                self.signal(signal.SIGKILL)
                deadline = time.monotonic() + 30
            time.sleep(0.01)
        if self.popen is not None:  # a DDP rank left behind by a killed rank 0 goes with it
            self.signal(signal.SIGKILL)
        return code


def weights_of(run_dir: Path) -> dict:
    """The run folder's final weights, as tensors."""
    return load_file(str(run_dir / "model.safetensors"))


def same_weights(a: dict, b: dict) -> bool:
    """Byte-for-byte equality of two state dicts."""
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and a[k].equal(b[k]) for k in a)


def wait_for_progress(child: Child, state: Path, checkpoints: int = 1) -> float:
    """Wait until `child` has written `checkpoints` more checkpoints (the trainer state file changes) or has
    exited; returns the seconds between its last two (0 when unknown), a step's time."""
    before = state.stat().st_mtime_ns if state.exists() else 0
    seen, last_change, step_seconds = 0, 0.0, 0.0
    while child.poll() is None and seen < checkpoints:
        now_mtime = state.stat().st_mtime_ns if state.exists() else 0
        if now_mtime != before:
            now = time.monotonic()
            step_seconds = now - last_change if last_change else 0.0
            seen, before, last_change = seen + 1, now_mtime, now
        time.sleep(0.002)
    return step_seconds


def reference_run(workdir: Path, family: str, data: dict[str, Path], steps: int, fork: bool,
                  extra: list[str] = ()) -> Path:
    """The uninterrupted training that every chain of `family` must reproduce; returns its run folder."""
    reference = workdir / f"{family}_reference"
    log = workdir / f"{family}_reference.log"
    code = Child(train_argv(family, data, reference, steps, False, extra), log, fork).wait(900)
    if code != 0:
        raise RuntimeError(f"reference run of {family} failed ({code}); see {log}")
    return reference


def kill_chain(workdir: Path, family: str, data: dict[str, Path], steps: int, signals: list[int],
               rng: random.Random, fork: bool, extra: list[str] = (), reference: Path | None = None) -> dict:
    """Train `family` for `steps` through one kill by each of `signals` (in that order) at random instants, each
    followed by a resume, then to the end; compare with `reference` (an uninterrupted run, made when None).

    A kill lands at a random point of a random step among the process's first few (or, one time in five, during
    its start-up), so that the kills, not the end of training, end the processes whatever the machine's speed.

    Returns {"kills": how many processes were stopped by a signal, "steps_seen": step of each kill's checkpoint,
    "equal": final weights bitwise equal to an uninterrupted run's, "codes": exit codes}.
    """
    reference = reference or reference_run(workdir, family, data, steps, fork, extra)
    run_dir = workdir / f"{family}_chain"
    log = workdir / f"{family}_chain.log"
    done, stopped, codes, steps_seen = False, 0, [], []
    while not done:
        resume = (run_dir / "trainer_state.safetensors").is_file()
        child = Child(train_argv(family, data, run_dir, steps, resume, extra), log, fork)
        if stopped < len(signals):
            if rng.random() > 0.2:  # most kills land mid-training: a few checkpoints into this process
                step_seconds = wait_for_progress(child, run_dir / "trainer_state.safetensors", rng.randint(1, 3))
                deadline = time.monotonic() + rng.uniform(0.0, step_seconds or 0.05)
            else:  # during start-up, resume or the first step
                deadline = time.monotonic() + rng.uniform(0.0, 0.2)
            while time.monotonic() < deadline and child.poll() is None:
                time.sleep(0.001)
            if child.poll() is None:
                child.signal(signals[stopped])
                stopped += 1
        code = child.wait(600)
        codes.append(code)
        if code == 0:
            done = True
        elif code not in (130, -signal.SIGKILL, 2, -signal.SIGINT, 137):
            raise RuntimeError(f"{family}: a chain process failed with exit code {code}; see {log}")
        state = run_dir / "trainer_state.safetensors"
        if state.is_file():
            from allmlp.checkpoint import load_trainer_state

            steps_seen.append(int(load_trainer_state(run_dir)["loop"]["step"]))
    return {"kills": stopped, "steps_seen": steps_seen, "codes": codes,
            "equal": same_weights(weights_of(reference), weights_of(run_dir))}


def hostile_input_counts() -> dict:
    """Run the hostile-input tests (every case asserts exit code 2, one line, no traceback, no payload run)."""
    root = Path(__file__).parents[1]
    done = subprocess.run([sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "-p", "no:cacheprovider",
                           "tests/test_hostile_inputs.py", "tests/test_faults.py", "-k", "hostile or payload"],
                          cwd=root, capture_output=True, text=True)
    counts = {word: 0 for word in ("passed", "failed", "error")}
    for number, word in re.findall(r"(\d+) (passed|failed|error)", done.stdout):
        counts[word] = int(number)
    clean = counts["passed"] > 0 and counts["failed"] == 0 and counts["error"] == 0
    return {"hostile_inputs": counts["passed"] + counts["failed"], "hostile_inputs_failed": counts["failed"],
            "tracebacks": 0 if clean else None, "payloads_run": 0 if clean else None}


def main() -> None:
    """Run the fuzz over the families and write the results JSON."""
    import tempfile

    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=200, help="kills in all (split over families and chains)")
    parser.add_argument("--per-chain", type=int, default=10, help="kills per chain")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-ddp", action="store_true", help="skip the 2-process DDP family")
    add_common_arguments(parser, "faults")
    args = parser.parse_args()
    if args.smoke:
        args.kills, args.per_chain, args.no_ddp = 4, 2, True
    torch.set_num_threads(1)
    preload()

    rng = random.Random(args.seed)
    plans = [(family, True, []) for family in FAMILIES]
    if not args.no_ddp:
        plans.append(("mixer", False, ["train.devices=2", "train.strategy=ddp"]))
    chains_each = max(1, args.kills // args.per_chain // len(plans))
    rows, kills, equal_kills = [], 0, 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        data = write_tiny_data(Path(tmp))
        for family, fork, extra in plans:
            name = family + ("_ddp" if extra else "")
            steps = 120 if fork else 60
            (Path(tmp) / name).mkdir()
            reference = reference_run(Path(tmp) / name, family, data, steps, fork, extra)
            for chain in range(chains_each):
                workdir = Path(tmp) / f"{name}_{chain}"
                workdir.mkdir()
                signals = [rng.choice([signal.SIGKILL, signal.SIGINT]) for _ in range(args.per_chain)]
                result = kill_chain(workdir, family, data, steps=steps, signals=signals, rng=rng, fork=fork,
                                    extra=extra, reference=reference)
                kills += result["kills"]
                equal_kills += result["kills"] if result["equal"] else 0
                rows.append({"family": name, "chain": chain, **result})
                print(f"{name} chain {chain}: {result['kills']} kills, bitwise equal: {result['equal']}", flush=True)
    hostile = {} if args.smoke else hostile_input_counts()
    out = {"kills": kills, "bitwise_equal": equal_kills, **hostile, "chains": rows,
           "seconds": round(time.perf_counter() - started, 1)}
    write_results(output_path(args, "faults"), args, [args.seed], out)
    print(f"{equal_kills}/{kills} kills resumed bitwise equal")


if __name__ == "__main__":
    main()
