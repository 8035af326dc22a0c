"""train.precision=auto: the probe leaves the run untouched, the cache, the decision rules, resume, DDP agreement,
bf16 quality against fp32, fp32 evaluation and sampling under bf16, and the thread rule."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from allmlp import machine, precision
from allmlp.config import ConfigError
from allmlp.configure import build_config, load_config
from allmlp.engine import make_fabric, run
from allmlp.precision import BF16, FP32, Choice, Probe
from allmlp.tasks import build_experiment


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Every test gets an empty cache folder: no choice cached by another run can leak in."""
    monkeypatch.setenv("ALLMLP_CACHE", str(tmp_path / "cache"))


def tiny_cfg(folder, steps=20, *extra):
    return build_config("fashion_mixer", [
        f"data.path={folder}", "data.batch_size=32", f"train.max_steps={steps}", "train.eval_interval=0",
        "train.checkpoint_interval=0", "train.progress=false", "train.log_interval=5", "model.hidden_dim=32",
        "model.depth=2", "model.tokens_mlp_dim=16", "model.channels_mlp_dim=64", "model.patch_size=7",
        "optim.warmup_steps=5", "data.augment=false", *extra])


def always_probe(monkeypatch):
    """Make the probe run however short the step or the run, and quickly."""
    monkeypatch.setattr(precision, "MIN_STEP_SECONDS", 0.0)
    monkeypatch.setattr(precision, "MIN_RUN_PROBES", 0)
    monkeypatch.setattr(precision, "PROBE_SECONDS", 0.0)


def fixed_probe(monkeypatch, ratio: float):
    """A probe that measures `ratio` (bf16 / fp32 speed) without timing anything; returns the call counter."""
    calls = []

    def fake(timer, budget=precision.PROBE_SECONDS):
        calls.append(timer)
        return Probe(fp32_step=ratio, bf16_step=1.0, seconds=0.01)

    monkeypatch.setattr(precision, "run_probe", fake)
    return calls


def no_choosing(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("auto probed, but the precision was already decided")

    monkeypatch.setattr(precision, "choose", fail)


def test_the_probe_leaves_weights_optimizer_and_rng_untouched(tiny_fashion, monkeypatch):
    always_probe(monkeypatch)
    cfg = tiny_cfg(tiny_fashion, 20, "model.dropout=0.2")  # dropout: the probe's steps draw random numbers
    exp = build_experiment(cfg)
    before = {k: v.clone() for k, v in exp.model.state_dict().items()}
    rng = torch.get_rng_state()
    timer = precision.StepTimer(exp.model, exp.loss_fn, exp.train_batches.batch(0),
                                lambda m: torch.optim.AdamW(m.parameters(), lr=0.1))
    with torch.random.fork_rng(devices=[]):
        probe = precision.run_probe(timer, budget=0.0)
    choice = precision.choose(exp, cfg, torch.device("cpu"))
    assert probe.fp32_step > 0 and probe.bf16_step > 0 and choice.precision in (FP32, BF16) and choice.ratio > 0
    assert torch.equal(torch.get_rng_state(), rng)
    for name, value in exp.model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert all(p.grad is None for p in exp.model.parameters()) and exp.model.training
    # the copy trained: its weights moved while the run's did not
    assert not torch.equal(timer.model.state_dict()["stem.proj.weight"], before["stem.proj.weight"])


def test_bf16_only_when_faster_by_more_than_the_margin():
    assert precision.choice_from_probe(Probe(1.09, 1.0, 0.5)).precision == FP32
    assert precision.choice_from_probe(Probe(1.11, 1.0, 0.5)).precision == BF16
    assert precision.choice_from_probe(Probe(0.6, 1.0, 0.5)).precision == FP32  # bf16 slower: fp32
    choice = precision.choice_from_probe(Probe(2.41, 1.0, 1.3))
    assert choice.ratio == 2.41 and choice.describe() == "bf16-mixed (auto: bf16 2.41x fp32, probe 1.3 s)"


def test_a_cached_choice_is_used_without_probing(tiny_fashion, monkeypatch):
    always_probe(monkeypatch)
    calls = fixed_probe(monkeypatch, 2.0)
    cfg = tiny_cfg(tiny_fashion)
    exp = build_experiment(cfg)
    first = precision.choose(exp, cfg, torch.device("cpu"))
    second = precision.choose(exp, cfg, torch.device("cpu"))
    assert len(calls) == 1 and first.precision == second.precision == BF16
    assert second.ratio == 2.0 and "cached probe" in second.reason
    entry, = json.loads(precision.cache_path().read_text())["choices"].values()
    assert entry["precision"] == BF16 and entry["model"] == "MlpMixer"
    # another shape is another key: probed again
    other = tiny_cfg(tiny_fashion, 20, "model.hidden_dim=48")
    precision.choose(build_experiment(other), other, torch.device("cpu"))
    assert len(calls) == 2


def test_cache_key_follows_shapes_threads_and_optimizer():
    model, batch = torch.nn.Linear(4, 3), (torch.zeros(8, 4), torch.zeros(8, dtype=torch.long))
    key = precision.cache_key(model, batch, "adamw")
    assert key == precision.cache_key(torch.nn.Linear(4, 3), batch, "AdamW")  # weights' values do not matter
    assert key != precision.cache_key(torch.nn.Linear(4, 5), batch, "adamw")
    assert key != precision.cache_key(model, (torch.zeros(16, 4), batch[1]), "adamw")
    assert key != precision.cache_key(model, batch, "sgd")
    real = machine.bf16_features
    other = sorted(set(real()) ^ {"amx_bf16"})  # this machine with AMX added or taken away
    machine.bf16_features = lambda: other  # the same model name with other bf16 units is another machine
    try:
        assert key != precision.cache_key(model, batch, "adamw")
    finally:
        machine.bf16_features = real
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert key != precision.cache_key(model, batch, "adamw")
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b"[1, 2]", b'{"version": 1, "choices": []}',
                                     b'{"version": 1, "choices": {"k": {"precision": "__import__(\'os\')", '
                                     b'"ratio": 1}}}', b'{"version": 1, "choices": {"k": {"precision": '
                                     b'"bf16-mixed", "ratio": NaN}}}'])
def test_a_corrupt_cache_is_ignored_with_a_warning_and_rewritten(content, tiny_fashion, monkeypatch):
    always_probe(monkeypatch)
    fixed_probe(monkeypatch, 0.8)
    path = precision.cache_path()
    path.write_bytes(content)
    with pytest.warns(UserWarning, match="precision"):
        assert precision.read_cache(path) == {}
    cfg = tiny_cfg(tiny_fashion)
    with pytest.warns(UserWarning, match="precision"):
        choice = precision.choose(build_experiment(cfg), cfg, torch.device("cpu"))
    assert choice.precision == FP32 and choice.ratio == 0.8
    assert list(json.loads(path.read_text())["choices"].values())[0]["precision"] == FP32


def test_short_steps_and_short_runs_skip_the_probe(tiny_fashion, monkeypatch):
    calls = fixed_probe(monkeypatch, 3.0)
    cfg = tiny_cfg(tiny_fashion, 3)  # 3 steps of a tiny model: far below MIN_RUN_PROBES probes of fp32 time
    choice = precision.choose(build_experiment(cfg), cfg, torch.device("cpu"))
    assert choice.precision == FP32 and choice.ratio == 0 and "too short" in choice.reason and not calls
    monkeypatch.setattr(precision, "MIN_STEP_SECONDS", 10.0)
    choice = precision.choose(build_experiment(cfg), cfg, torch.device("cpu"))
    assert "ms are too short" in choice.reason and not calls
    assert not precision.cache_path().exists()  # a decision about one run's length is not cached
    cfg = tiny_cfg(tiny_fashion, 0)
    assert "no autograd steps" in precision.choose(build_experiment(cfg), cfg, torch.device("cpu")).reason


def test_a_failing_probe_falls_back_to_fp32(tiny_fashion, monkeypatch):
    always_probe(monkeypatch)

    def broken(timer, budget=0):
        raise RuntimeError("no bf16 kernel for this op")

    monkeypatch.setattr(precision, "run_probe", broken)
    cfg = tiny_cfg(tiny_fashion)
    fabric = make_fabric(cfg.train)
    with pytest.warns(UserWarning, match="the probe failed"):
        choice = precision.settle(fabric, build_experiment(cfg), cfg)
    assert choice.precision == FP32 and cfg.train.precision_chosen == FP32


def test_explicit_precision_wins_without_probing(tiny_fashion, tmp_path, monkeypatch):
    no_choosing(monkeypatch)
    cfg = tiny_cfg(tiny_fashion, 20, "train.precision=bf16-mixed", "train.precision_chosen=32-true")
    fabric = make_fabric(cfg.train)
    choice = precision.settle(fabric, build_experiment(cfg), cfg)
    assert choice.precision == BF16 and choice.reason == "train.precision"
    assert cfg.train.precision_chosen == "" and fabric.strategy.precision.precision == BF16
    cfg = tiny_cfg(tiny_fashion, 2, "train.precision=32")  # Fabric's other spellings are Fabric's to apply
    run(cfg, tmp_path / "run", reuse=True)
    assert load_config(tmp_path / "run" / "config.yaml").train.precision == "32"


def test_auto_choice_is_applied_and_kept_by_resume_bitwise(tiny_fashion, tmp_path, monkeypatch):
    import os
    import signal

    always_probe(monkeypatch)
    fixed_probe(monkeypatch, 2.5)

    def config():
        return tiny_cfg(tiny_fashion, 12, "train.eval_interval=6", "model.dropout=0.2")

    def train(cfg, run_dir, resume=False, hooks=()):
        seen, built = set(), []

        def watch_dtypes(exp, *_):
            built.append(exp)
            exp.model.blocks[0].channel_mixing.fc1.register_forward_hook(lambda m, i, out: seen.add(out.dtype))

        run(cfg, run_dir, resume=resume, reuse=True, hooks=hooks, prepare=watch_dtypes)
        return built[0], seen

    assert config().train.precision == "auto"
    straight, seen = train(config(), tmp_path / "straight")
    assert seen == {torch.bfloat16}  # auto chose bf16-mixed and the model computed in it
    saved = load_config(tmp_path / "straight" / "config.yaml").train
    assert (saved.precision, saved.precision_chosen, saved.precision_ratio) == ("auto", BF16, 2.5)
    setup, = [r for r in map(json.loads, (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines())
              if r["split"] == "setup"]
    assert setup["bf16_over_fp32"] == 2.5 and setup["threads"] == torch.get_num_threads()

    def interrupt(step, model, writer):  # Ctrl-C at step 6's evaluation: the run saves and stops
        if step == 6:
            os.kill(os.getpid(), signal.SIGINT)

    train(config(), tmp_path / "broken", hooks=[interrupt])
    no_choosing(monkeypatch)  # resuming never probes: the run's config.yaml holds the choice
    resumed, seen = train(load_config(tmp_path / "broken" / "config.yaml"), tmp_path / "broken", resume=True)
    assert seen == {torch.bfloat16}
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_ddp_ranks_take_rank_zeros_choice(tiny_fashion, monkeypatch):
    """Rank 0 chooses and broadcasts; another rank never probes and trains in what rank 0 sent."""
    from lightning.fabric.plugins.precision import Precision

    sent = []

    def fabric_of(rank):
        def broadcast(obj, src=0):
            if rank == 0:
                sent.append(obj)
                return obj
            return sent[0]
        return SimpleNamespace(global_rank=rank, world_size=2, broadcast=broadcast, device=torch.device("cpu"),
                               strategy=SimpleNamespace(precision=Precision()))

    monkeypatch.setattr(precision, "choose", lambda *args: Choice(BF16, 1.8, "auto: rank 0"))
    cfg0 = tiny_cfg(tiny_fashion)
    rank0 = fabric_of(0)
    assert precision.settle(rank0, None, cfg0).precision == BF16
    no_choosing(monkeypatch)
    cfg1 = tiny_cfg(tiny_fashion)
    rank1 = fabric_of(1)
    assert precision.settle(rank1, None, cfg1) == Choice(BF16, 1.8, "auto: rank 0")
    assert rank1.strategy.precision.precision == BF16 == cfg1.train.precision_chosen


def test_auto_chosen_16_mixed_on_cpu_is_a_clear_error():
    cfg = build_config("fashion_mixer", ["train.accelerator=cpu", "train.precision_chosen=16-mixed"])
    with pytest.raises(ConfigError, match="train.precision_chosen=16-mixed needs a GPU"):
        make_fabric(cfg.train)
    with pytest.raises(ConfigError, match="train.precision_chosen='fp8': must be empty"):
        build_config("fashion_mixer", ["train.precision_chosen=fp8"])


def test_bf16_training_matches_fp32_loss(tiny_fashion, tmp_path):
    """200 steps of a tiny Mixer in fp32 and in bf16-mixed: the training losses agree to 0.02 nats at every
    logged window, and the test losses too.

    Why 0.02: bf16 keeps 8 mantissa bits, so autocast rounds each matmul input by up to 2**-9 (0.2%) relative
    (products are still summed in fp32) and the weights follow a slightly different path. Measured here the gap
    is at most 0.002 nats while the training loss falls from 1.83 to 0.50 (the preset's label smoothing of 0.1
    keeps it there) and the test loss reaches 0.10: 0.02 is ten times bf16's honest rounding and far below the
    damage of a real mistake (a loss computed in bf16 is rounded to 3 significant digits, ~0.004 at 1.0, and
    compounds; a lost gradient or wrong cast leaves the loss near ln 10 = 2.3).
    """
    def losses(precision_name):
        cfg = tiny_cfg(tiny_fashion, 200, f"train.precision={precision_name}", "train.log_interval=25")
        result = run(cfg, tmp_path / precision_name, reuse=True)
        lines = (tmp_path / precision_name / "metrics.jsonl").read_text().splitlines()
        return [r["loss"] for r in map(json.loads, lines) if r["split"] == "train"], result["test/loss"]

    fp32, fp32_test = losses("32-true")
    bf16, bf16_test = losses("bf16-mixed")
    assert len(fp32) == len(bf16) == 8 and fp32[0] > 1.5 and fp32_test < 0.2  # a real descent, then agreement
    assert max(abs(a - b) for a, b in zip(fp32, bf16)) < 0.02
    assert abs(fp32_test - bf16_test) < 0.02


def test_language_eval_loss_under_bf16_is_computed_in_fp32():
    from allmlp.tasks.language import lm_loss

    torch.manual_seed(0)
    weight = torch.randn(64, 84)
    hidden = torch.randn(4, 16, 64) * 3
    targets = torch.randint(0, 84, (4, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = hidden @ weight  # (B, T, V) in bf16, as a model's head gives them under autocast
        loss = lm_loss(logits, targets)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    exact = F.cross_entropy(logits.float().reshape(-1, 84), targets.reshape(-1))
    assert torch.equal(loss, exact)  # the bf16 logits, but log-softmax and the mean in fp32
    in_bf16 = F.cross_entropy(logits.reshape(-1, 84), targets.reshape(-1))
    assert in_bf16.dtype == torch.bfloat16  # what would happen without the cast: a loss rounded to 3 digits


def test_image_eval_logits_under_bf16_are_fp32(tiny_fashion):
    from allmlp.tasks.classification import classification_metrics, predict

    cfg = tiny_cfg(tiny_fashion)
    exp = build_experiment(cfg)
    images = exp.train_batches.tensors[0][:64]
    labels = exp.train_batches.tensors[1][:64]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = predict(exp.model, images, 32)
    assert logits.dtype == torch.float32
    reference = predict(exp.model, images, 32)  # fp32 all the way
    loss, reference_loss = (classification_metrics(x, labels)["loss"] for x in (logits, reference))
    assert abs(loss - reference_loss) < 0.02


def test_sampling_under_bf16_draws_from_fp32_logits():
    from allmlp.data.text import CharTokenizer
    from allmlp.generate import next_char_logits, sample_id
    from allmlp.models import create_model

    tokenizer = CharTokenizer(sorted(set("abcdefgh \n")))
    model = create_model("causal_mixer", vocab_size=tokenizer.vocab_size).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = next_char_logits(model, tokenizer, tokenizer.encode("abc"))
    assert logits.dtype == torch.float32 and logits.shape == (tokenizer.vocab_size,)
    probabilities = (logits / 0.7).softmax(-1)
    assert math.isclose(float(probabilities.sum()), 1.0, abs_tol=1e-6)
    draws = [sample_id(logits, 0.7, generator=torch.Generator().manual_seed(s)) for s in range(8)]
    assert all(0 <= d < tokenizer.vocab_size for d in draws)


def test_threads_rule(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert machine.torch_threads(5) == (5, "train.threads")
    assert machine.torch_threads(0) == (3, "OMP_NUM_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(machine, "physical_cores", lambda: 8)
    assert machine.torch_threads(0) == (8, "one per physical core, 8 cores")
    assert machine.torch_threads(0, devices=2) == (4, "8 physical cores / 2 processes")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")  # torchrun's count of this machine's processes wins
    assert machine.torch_threads(0, devices=1) == (2, "8 physical cores / 3 processes")


def test_physical_cores_count_hyperthreads_once_and_follow_the_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(machine, "_usable_cpus", lambda: [0, 1, 2, 3])
    for cpu, core in enumerate([0, 0, 1, 1]):  # two cores with two hyper-threads each
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text("0\n")
        (topology / "core_id").write_text(f"{core}\n")
    no_quota = tmp_path / "cpu.max"
    no_quota.write_text("max 100000\n")
    assert machine.physical_cores(tmp_path, no_quota) == 2
    quota = tmp_path / "quota"
    quota.write_text("50000 100000\n")  # half a CPU: one thread
    assert machine.physical_cores(tmp_path, quota) == 1
    assert machine.physical_cores(tmp_path / "missing", no_quota) == 4  # no topology: logical CPUs count


def test_the_run_header_names_precision_and_threads(tiny_fashion, tmp_path, tiny_run, capsys):
    tiny_run(tmp_path, "fashion_mixer", f"data.path={tiny_fashion}", "model.depth=1")
    out = capsys.readouterr().out
    assert "precision: 32-true (auto: " in out and "too short" in out  # 2 tiny steps: no probe
    assert f"torch threads: {torch.get_num_threads()} (OMP_NUM_THREADS)" in out
