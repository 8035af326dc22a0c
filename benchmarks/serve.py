"""`allmlp serve` under load: C = 1, 4, 16 streaming clients of a Shakespeare causal Mixer on 127.0.0.1.

Each client asks for 300 characters, a bounded number of times and for a bounded time; per level: time to the first
character (p50, p95), characters per second per client and in total, errors, the server's memory. The baseline is
plain generation (allmlp.generate.generate_text, what `allmlp generate` streams) of the same model with the same
settings in this process, measured in the same run: web_overhead_ratio = served / plain chars per second at C = 1.

    python benchmarks/serve.py                      # trains a shakespeare_mixer for --train-minutes first
    python benchmarks/serve.py --run runs/demo_shakespeare_mixer
    python benchmarks/serve.py --smoke              # seconds, tiny model on synthetic text
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_common_arguments, output_path, runs_folder, smoke_folder, smoke_text, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "ROMEO:"
SETTINGS = {"temperature": 0.8, "top_k": None, "top_p": None}


def train_run(args, run_dir: Path) -> Path:
    """A shakespeare_mixer trained for --train-minutes (smoke: a tiny one for 3 steps on synthetic text)."""
    from allmlp.cli import main

    overrides = [f"train.max_minutes={args.train_minutes}", "train.max_steps=100000000", "train.progress=false",
                 "train.checkpoint_interval=0", "data.eval_targets=4096"]
    if args.smoke:
        overrides = ["data.name=text", f"data.path={smoke_text(smoke_folder('serve'))}", "train.max_steps=3",
                     "train.progress=false", "train.eval_interval=0", "train.checkpoint_interval=0",
                     "model.embedding_dim=16", "model.depth=1", "model.channels_mlp_dim=16", "model.num_heads=2",
                     "data.eval_targets=512"]
    if main(["train", "shakespeare_mixer", *overrides, "--run-dir", str(run_dir)]) != 0:
        raise SystemExit("benchmarks/serve.py: training the model failed")
    return run_dir


class PlainGeneration:
    """Plain generation of the run's model in this process: the library call `allmlp generate` streams from."""

    def __init__(self, run_dir: Path):
        from allmlp.checkpoint import load_run

        self.model, _, self.tokenizer = load_run(run_dir)
        self.chars_per_s(20, seed=0)  # warm-up

    def chars_per_s(self, chars: int, seed: int) -> float:
        from allmlp.generate import generate_text

        start = time.perf_counter()
        text = generate_text(self.model, self.tokenizer, PROMPT, chars, seed=seed, **SETTINGS)
        return len(text) / (time.perf_counter() - start)


class Server:
    """`allmlp serve` in a subprocess over the run's parent folder, on a free port of 127.0.0.1."""

    def __init__(self, run_dir: Path, max_generations: int):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
               "OMP_NUM_THREADS": str(torch.get_num_threads())}  # the same torch threads as the baseline here
        self.process = subprocess.Popen(
            [sys.executable, "-m", "allmlp", "serve", str(run_dir.parent), "--port", "0", "--max-generations",
             str(max_generations)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = self.process.stdout.readline()
        if " at http://" not in line:
            self.process.kill()
            raise SystemExit(f"benchmarks/serve.py: the server did not start: {line}{self.process.stderr.read()}")
        self.url = line.split(" at ")[1].split()[0].rstrip("/")

    def rss_mb(self) -> float:
        """The server process's resident memory now."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def one_request(client, url: str, body: dict) -> dict:
    """Stream one answer: seconds to the first char, seconds in all, chars received, and an error if any."""
    start = time.perf_counter()
    first, chars, error, done = None, 0, None, False
    try:
        with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                response.read()
                return {"error": f"HTTP {response.status_code}: {response.text[:200]}"}
            event = None
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                    if event == "text":
                        first = first if first is not None else time.perf_counter() - start
                        chars += len(data["text"])
                    elif event == "error":
                        error = data["error"]
                    elif event == "done":
                        done = True
    except Exception as err:  # a dropped connection or a timeout is a failed request, counted
        error = f"{type(err).__name__}: {err}"
    seconds = time.perf_counter() - start
    if error is None and (not done or chars != body["max_new_tokens"]):
        error = f"incomplete answer: {chars} of {body['max_new_tokens']} chars"
    return {"ttfc": first, "seconds": seconds, "chars": chars, "error": error}


def load_level(server: Server, run_name: str, clients: int, requests: int, chars: int, max_seconds: float,
               plain: PlainGeneration | None = None) -> dict:
    """`clients` threads, each streaming up to `requests` answers one after the other, until max_seconds pass.

    With `plain` (C = 1), each request follows a plain generation of the same seed here, the server idle meanwhile:
    baseline and served speed are measured in turns, so a busy machine slows both alike.
    """
    import httpx

    url = f"{server.url}/api/runs/{run_name}/generate"
    results: list[dict] = []
    plain_rates: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + max_seconds

    def client_loop(index: int) -> None:
        with httpx.Client(timeout=max_seconds + 60) as client:
            for number in range(requests):
                if time.perf_counter() > deadline:
                    return
                seed = 1000 * index + number
                if plain is not None:
                    plain_rates.append(plain.chars_per_s(chars, seed))
                body = {"prompt": PROMPT, "max_new_tokens": chars, "seed": seed, **SETTINGS}
                result = one_request(client, url, body)
                with lock:
                    results.append(result)

    start = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    good = [r for r in results if r["error"] is None]
    ttfc = [r["ttfc"] for r in good]
    return {"requests": len(results), "errors": len(results) - len(good),
            "error_messages": sorted({r["error"] for r in results if r["error"]})[:5],
            "ttfc_p50_s": round(float(np.percentile(ttfc, 50)), 4) if ttfc else None,
            "ttfc_p95_s": round(float(np.percentile(ttfc, 95)), 4) if ttfc else None,
            "chars_per_s": round(statistics.median(r["chars"] / r["seconds"] for r in good), 1) if good else 0.0,
            "total_chars_per_s": round(sum(r["chars"] for r in good) / wall, 1), "wall_s": round(wall, 2),
            "server_rss_mb": round(server.rss_mb(), 1),
            **({"generate_chars_per_s": round(statistics.median(plain_rates), 1)} if plain_rates else {})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(parser, "serve")
    parser.add_argument("--run", help="a trained causal Mixer run folder (default: train a shakespeare_mixer first)")
    parser.add_argument("--train-minutes", type=float, default=1.0, help="training budget when no --run is given")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="concurrency levels (1 4 16)")
    parser.add_argument("--chars", type=int, default=300, help="characters each request asks for (300)")
    parser.add_argument("--requests", type=int, default=3, help="requests per client at C > 1 (3)")
    parser.add_argument("--pairs", type=int, default=8, help="at C = 1: plain and served answers, in turns (8)")
    parser.add_argument("--max-seconds", type=float, default=120, help="no new request after this long per level")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, here and in the server (1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.smoke:
        args.clients, args.chars, args.requests, args.pairs, args.max_seconds = [1, 2], 30, 1, 2, 60
    if 1 not in args.clients:
        raise SystemExit("benchmarks/serve.py: --clients must include 1 (the web overhead ratio is measured there)")
    run_dir = Path(args.run) if args.run else train_run(args, runs_folder(args, "serve") / "serve_shakespeare_mixer")
    server = Server(run_dir.resolve(), max_generations=max(args.clients))
    try:
        import httpx

        with httpx.Client(timeout=120) as client:  # the first request loads the model into the server's cache
            one_request(client, f"{server.url}/api/runs/{run_dir.name}/generate", {"prompt": PROMPT,
                                                                                     "max_new_tokens": 10})
        plain = PlainGeneration(run_dir)
        levels = {}
        for clients in sorted(args.clients):
            levels[str(clients)] = load_level(server, run_dir.name, clients, args.pairs if clients == 1 else
                                              args.requests, args.chars, args.max_seconds,
                                              plain if clients == 1 else None)
            print(f"C={clients:>2}: {json.dumps(levels[str(clients)])}", flush=True)
    finally:
        server.close()
    generate_rate = levels["1"].pop("generate_chars_per_s")
    ratio = levels["1"]["chars_per_s"] / generate_rate
    print(f"plain generate {generate_rate:.1f} chars/s; served at C=1 {levels['1']['chars_per_s']:.1f} chars/s: "
          f"web_overhead_ratio {ratio:.3f}", flush=True)
    write_results(output_path(args, "serve"), args, [], {
        "run": str(run_dir), "prompt": PROMPT, "settings": SETTINGS, "chars_per_request": args.chars,
        "requests_per_client": args.requests, "pairs_at_1": args.pairs, "torch_threads": args.threads, "generate_chars_per_s": round(generate_rate, 1),
        "web_overhead_ratio": round(ratio, 4), "clients": levels,
        "server_rss_mb": max(level["server_rss_mb"] for level in levels.values()),
        "targets": {"web_overhead_ratio_at_least": 0.9, "errors_at_16": 0}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
