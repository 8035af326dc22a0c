"""`train.precision=auto`: bf16-mixed where this machine trains this model measurably faster in it, else fp32.

On CPU whether bf16 pays depends on the processor both ways (0.7x to 3x fp32 on our build machines), so auto
measures: a short probe times training steps of a copy of the run's model on one real batch in fp32 and in
bf16-mixed, interleaved, and keeps fp32 unless bf16 is faster by more than MARGIN. The answer is cached per machine
and model shape, so a second run of the same shape costs nothing. On CUDA auto takes bf16-mixed where the GPU has
it, else 16-mixed. Under DDP rank 0 decides and tells the others, so every process trains in one precision.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

AUTO = "auto"
FP32, BF16 = "32-true", "bf16-mixed"
MARGIN = 1.10  # bf16 must be over 10% faster: a smaller gain is within the noise of a shared machine
PROBE_SECONDS = 1.5  # timed steps of the probe, both precisions together (at least MIN_ROUNDS rounds)
MIN_ROUNDS, MAX_ROUNDS = 3, 8
MIN_STEP_SECONDS = 1e-3  # a step this short is bound by per-step overhead, which bf16 does not shrink
MIN_RUN_PROBES = 5  # probe only when the fp32 run would last this many probes: else no gain repays the probe
CACHE_FILE = "precision.json"
CACHE_VERSION = 1
CACHE_ENTRIES = 256  # the most recent choices kept


@dataclass
class Choice:
    """The precision a run trains in, the probe's bf16 / fp32 speed ratio (0: not measured) and why."""

    precision: str
    ratio: float = 0.0
    reason: str = ""

    def describe(self) -> str:
        """As the run header shows it, e.g. `bf16-mixed (auto: bf16 2.41x fp32, probe 1.3 s)`."""
        return f"{self.precision} ({self.reason})" if self.reason else self.precision


@dataclass
class Probe:
    """Median seconds per training step in fp32 and bf16-mixed, and the probe's own cost in seconds."""

    fp32_step: float
    bf16_step: float
    seconds: float

    @property
    def ratio(self) -> float:
        """bf16-mixed steps per second over fp32's (above 1: bf16 is faster)."""
        return self.fp32_step / self.bf16_step


class _UnderPrecision(nn.Module):
    """`module` called the way Fabric calls it under a precision plugin: inputs converted, forward in the
    plugin's autocast, outputs back in the default dtype."""

    def __init__(self, module: nn.Module, plugin):
        super().__init__()
        self.module, self.plugin = module, plugin

    def forward(self, *args, **kwargs):
        args, kwargs = self.plugin.convert_input((args, kwargs))
        with self.plugin.forward_context():
            out = self.module(*args, **kwargs)
        return self.plugin.convert_output(out)


def plugin_for(precision: str, device_type: str = "cpu"):
    """Lightning's precision plugin for one of config.AUTO_PRECISIONS on `device_type` (cpu, cuda, mps)."""
    from lightning.fabric.plugins.precision import MixedPrecision, Precision

    return Precision() if precision == FP32 else MixedPrecision(precision, device=device_type)


class StepTimer:
    """Times full training steps (forward, loss, backward, optimizer step) of a copy of a model; the model, its
    optimizer and the RNG state of the caller are left untouched."""

    def __init__(self, model: nn.Module, loss_fn: Callable, batch: tuple,
                 make_optimizer: Callable[[nn.Module], torch.optim.Optimizer]):
        self.model = copy.deepcopy(model).train()
        for module in self.model.modules():  # a hook of the run's (inspection, logging) must not see the probe
            for hooks in (module._forward_pre_hooks, module._forward_hooks, module._backward_pre_hooks,
                          module._backward_hooks):
                hooks.clear()
        self.optimizer = make_optimizer(self.model)
        self.loss_fn, self.batch = loss_fn, batch
        self.wrapped = {p: _UnderPrecision(self.model, plugin_for(p)) for p in (FP32, BF16)}

    def step(self, precision: str) -> float:
        """Seconds of one training step in `precision` (FP32 or BF16)."""
        wrapped = self.wrapped[precision]
        start = time.perf_counter()
        loss, _ = self.loss_fn(wrapped, self.batch)
        wrapped.plugin.backward(loss, self.model)
        wrapped.plugin.optimizer_step(self.optimizer)
        self.optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start


def run_probe(timer: StepTimer, budget: float = PROBE_SECONDS) -> Probe:
    """Interleaved rounds of one fp32 and one bf16 step (order alternating), after a warm-up step of each, until
    `budget` seconds of rounds (MIN_ROUNDS to MAX_ROUNDS); medians, so a busy neighbour spoils no decision."""
    start = time.perf_counter()
    timer.step(FP32), timer.step(BF16)  # first calls allocate and pick kernels
    times: dict[str, list[float]] = {FP32: [], BF16: []}
    rounds_start = time.perf_counter()
    for round_number in range(MAX_ROUNDS):
        order = (FP32, BF16) if round_number % 2 == 0 else (BF16, FP32)
        for precision in order:
            times[precision].append(timer.step(precision))
        if round_number + 1 >= MIN_ROUNDS and time.perf_counter() - rounds_start >= budget:
            break
    return Probe(statistics.median(times[FP32]), statistics.median(times[BF16]), time.perf_counter() - start)


def choice_from_probe(probe: Probe) -> Choice:
    """bf16-mixed when the probe measured it faster than fp32 by more than MARGIN, else fp32."""
    precision = BF16 if probe.ratio > MARGIN else FP32
    return Choice(precision, round(probe.ratio, 3), f"auto: bf16 {probe.ratio:.2f}x fp32, probe {probe.seconds:.1f} s")


# ---- the cache: one small JSON file of choices, read with json only (never code), written atomically ----

def cache_path() -> Path:
    """The precision cache file in allmlp's cache folder."""
    from .data.cache import cache_dir

    return cache_dir() / CACHE_FILE


def cache_key(model: nn.Module, batch: tuple, optimizer_name: str) -> str:
    """What a choice depends on: processor (and its bf16 features), torch version and threads, the model's class
    and parameter shapes, the batch's shapes and the optimizer."""
    from .machine import bf16_features, cpu_model

    model_class = f"{type(model).__module__}.{type(model).__qualname__}"
    what = [cpu_model(), bf16_features(), torch.__version__, torch.get_num_threads(), model_class,
            [[name, list(p.shape)] for name, p in model.named_parameters() if p.requires_grad],
            [[list(t.shape), str(t.dtype)] for t in batch if isinstance(t, torch.Tensor)], optimizer_name.lower()]
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:32]


def _valid_entry(entry) -> bool:
    return (isinstance(entry, dict) and entry.get("precision") in (FP32, BF16)
            and isinstance(entry.get("ratio"), (int, float)) and math.isfinite(entry["ratio"]))


def read_cache(path: Path) -> dict[str, dict]:
    """The cached choices by key; a missing file is empty, a corrupt one is ignored with a warning."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as err:
        warnings.warn(f"{path}: unreadable precision cache ({err}); probing again", stacklevel=2)
        return {}
    try:
        tree = json.loads(text)
        choices = tree["choices"] if tree.get("version") == CACHE_VERSION else None
    except (json.JSONDecodeError, TypeError, KeyError, AttributeError):
        choices = None
    if not isinstance(choices, dict) or not all(_valid_entry(e) for e in choices.values()):
        warnings.warn(f"{path}: not a precision cache (corrupt or from another version); probing again and "
                      "rewriting it", stacklevel=2)
        return {}
    return choices


def write_cache(path: Path, key: str, entry: dict) -> None:
    """Add `entry` under `key` (the oldest entries beyond CACHE_ENTRIES are dropped), atomically; a cache that
    cannot be written only costs a probe next time."""
    from .files import atomic_write_bytes

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a corrupt file was reported when it was read
        choices = read_cache(path)
    choices.pop(key, None)
    choices[key] = entry
    kept = dict(list(choices.items())[-CACHE_ENTRIES:])
    try:
        atomic_write_bytes(path, (json.dumps({"version": CACHE_VERSION, "choices": kept}, indent=1) + "\n").encode())
    except OSError as err:
        warnings.warn(f"{path}: cannot write the precision cache ({err})", stacklevel=2)


# ---- the decision ----

def choose(exp, cfg, device: torch.device, rank: int = 0, world_size: int = 1) -> Choice:
    """What `train.precision=auto` trains `exp` in on `device` (for this process's share of the batch)."""
    from .optim import build_optimizer, total_steps

    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return Choice(BF16, 0.0, "auto: the GPU supports bf16")
        return Choice("16-mixed", 0.0, "auto: the GPU has no bf16")
    if device.type != "cpu":
        return Choice(FP32, 0.0, f"auto: fp32 on {device.type}")
    train = cfg.train
    steps = total_steps(train, exp.train_batches.steps_per_epoch) * max(1, train.accumulate_grad_batches)
    trainable = any(p.requires_grad for p in exp.model.parameters())
    if steps == 0 or exp.manual_backward or not trainable:
        return Choice(FP32, 0.0, "auto: no autograd steps to speed up")
    batch = exp.train_batches.batch(0, rank, world_size)
    key = cache_key(exp.model, batch, cfg.optim.name)
    try:
        path = cache_path()
    except OSError as err:  # no cache folder to be had: probe every time rather than not at all
        warnings.warn(f"train.precision=auto: no cache folder ({err}); the probe's choice is not kept", stacklevel=2)
        path = None
    cached = read_cache(path).get(key) if path is not None else None
    if cached is not None:
        return Choice(cached["precision"], cached["ratio"], f"auto: bf16 {cached['ratio']:.2f}x fp32, cached probe")
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # the probe's dropout must not move the run's random stream
        timer = StepTimer(exp.model, exp.loss_fn, batch, lambda model: build_optimizer(cfg.optim, model))
        timer.step(FP32)
        fp32_step = timer.step(FP32)
        if fp32_step < MIN_STEP_SECONDS:
            return Choice(FP32, 0.0, f"auto: steps of {fp32_step * 1e3:.2f} ms are too short for bf16 to pay")
        planned = steps * fp32_step if train.max_minutes <= 0 else min(steps * fp32_step, train.max_minutes * 60)
        probe_cost = max(PROBE_SECONDS, (2 + 2 * MIN_ROUNDS) * fp32_step * 1.5)  # bf16 steps may take longer
        if planned < MIN_RUN_PROBES * probe_cost:
            return Choice(FP32, 0.0, f"auto: a run of ~{planned:.1f} s in fp32 is too short to repay a probe")
        probe = run_probe(timer)
    probe = dataclasses.replace(probe, seconds=time.perf_counter() - start)  # the copy and first steps too
    choice = choice_from_probe(probe)
    if path is not None:
        write_cache(path, key, {"precision": choice.precision, "ratio": choice.ratio,
                                "fp32_step_ms": round(probe.fp32_step * 1e3, 3),
                                "bf16_step_ms": round(probe.bf16_step * 1e3, 3), "model": type(exp.model).__name__})
    return choice


def use(fabric, precision: str) -> None:
    """Make `fabric` (built with auto's placeholder, fp32) train and evaluate in `precision`."""
    if fabric.strategy.precision.precision == precision:
        return
    plugin = plugin_for(precision, fabric.device.type)
    fabric.strategy.precision = plugin  # what the wrapped module's forward and backward use
    fabric._precision = plugin  # Fabric's own reference (setup, autocast); lightning 2.6 has no public setter


def settle(fabric, exp, cfg) -> Choice:
    """The run's precision: `train.precision` when set, the one auto chose earlier for this run
    (`train.precision_chosen`, kept by --resume), else auto's choice now, made on rank 0 and broadcast. Applies it
    to `fabric` and records auto's choice in `cfg.train`; every process must call this (a collective under DDP)."""
    train = cfg.train
    if train.precision != AUTO:
        choice = Choice(train.precision, 0.0, "train.precision")
    elif train.precision_chosen:
        choice = Choice(train.precision_chosen, train.precision_ratio, "auto: as chosen when this run started")
    else:
        choice = None
        if fabric.global_rank == 0:
            try:
                choice = choose(exp, cfg, fabric.device, fabric.global_rank, fabric.world_size)
            except Exception as err:  # a probe must never stop a run (nor, under DDP, leave the others waiting)
                warnings.warn(f"train.precision=auto: the probe failed ({type(err).__name__}: {err}); "
                              "training in fp32", stacklevel=2)
                choice = Choice(FP32, 0.0, "auto: the probe failed")
        if fabric.world_size > 1:
            choice = Choice(**fabric.broadcast(dataclasses.asdict(choice) if choice else None, src=0))
    if train.precision == AUTO:
        use(fabric, choice.precision)
        train.precision_chosen, train.precision_ratio = choice.precision, choice.ratio
    else:  # make_fabric built it in this precision; no choice to keep (a later train.precision=auto decides afresh)
        train.precision_chosen, train.precision_ratio = "", 0.0
    return choice
