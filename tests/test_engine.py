import torch
import torch.nn.functional as F

from allmlp.checkpoint import CheckpointError, load_run, load_weights
from allmlp.configure import build_config, load_config
from allmlp.data.batches import TensorBatches
from allmlp.engine import Experiment, run
from allmlp.models import create_model


def tiny_cfg(folder, steps=150, **extra):
    overrides = [f"data.path={folder}", "data.batch_size=64", f"train.max_steps={steps}", "train.eval_interval=0",
                 "train.checkpoint_interval=0", "train.progress=false", "train.log_interval=10",
                 "model.hidden_dim=32", "model.depth=2", "model.tokens_mlp_dim=16", "model.channels_mlp_dim=64",
                 "model.patch_size=7", "optim.warmup_steps=5", "data.augment=false"]
    return build_config("fashion_mixer", overrides + [f"{k}={v}" for k, v in extra.items()])


def train(cfg, run_dir, resume=False, hooks=()):
    built = []
    result = run(cfg, run_dir, resume=resume, reuse=True, hooks=hooks, prepare=lambda exp, *_: built.append(exp))
    return built[0], result


def test_learns_separable_task(tiny_fashion, tmp_path):
    _, result = train(tiny_cfg(tiny_fashion), tmp_path / "run")
    assert result["test/acc"] > 0.9
    records = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(records) >= 6 and list((tmp_path / "run").glob("events.out.tfevents.*"))


def test_the_config_is_in_the_run_folder_from_the_first_step(tiny_fashion, tmp_path):
    run_dir, seen = tmp_path / "run", []

    def look(step, model, tb):  # an evaluation hook: runs between steps, before any checkpoint here
        seen.append((step, (run_dir / "config.yaml").is_file(), (run_dir / "model.safetensors").is_file()))

    train(tiny_cfg(tiny_fashion, steps=3, **{"train.eval_interval": 1}), run_dir, hooks=(look,))
    assert seen[0] == (1, True, False)  # config.yaml at step 1, no weights yet (checkpoint_interval=0)
    assert load_config(run_dir / "config.yaml").model.args["depth"] == 2


def test_checkpoint_round_trip_gives_identical_logits(tiny_fashion, tmp_path):
    exp, _ = train(tiny_cfg(tiny_fashion, steps=5), tmp_path / "run")
    model, cfg, tokenizer = load_run(tmp_path / "run")
    x = torch.randn(4, 1, 28, 28)
    exp.model.eval()
    assert torch.equal(model(x), exp.model(x)) and tokenizer is None
    assert cfg.model.args["num_classes"] == 10


def test_ctrl_c_saves_at_the_step_boundary_and_resumes_bitwise(tiny_fashion, tmp_path):
    import os
    import signal

    from allmlp.checkpoint import load_trainer_state

    cfg = tiny_cfg(tiny_fashion, steps=20, **{"train.eval_interval": 10, "model.dropout": 0.2})
    straight, _ = train(cfg, tmp_path / "straight")

    def interrupt(step, model, writer):  # Ctrl-C arrives in the middle of step 10's evaluation
        if step == 10:
            os.kill(os.getpid(), signal.SIGINT)

    _, stopped = train(cfg, tmp_path / "broken", hooks=[interrupt])
    assert stopped["interrupted"] and stopped["step"] == 10
    assert load_trainer_state(tmp_path / "broken")["loop"]["step"] == 10
    resumed, result = train(cfg, tmp_path / "broken", resume=True)
    assert result["step"] == 20 and not result["interrupted"]
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_gradient_accumulation_matches_big_batch(tmp_path):
    torch.manual_seed(0)
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))

    def trained_weight(batch_size, accum):
        cfg = build_config("fashion_mixer", [f"train.accumulate_grad_batches={accum}", "train.max_steps=3",
                                             "train.progress=false", "optim.warmup_steps=0", "optim.grad_clip=0",
                                             "train.eval_interval=0", "train.checkpoint_interval=0"])
        torch.manual_seed(1)
        model = torch.nn.Linear(8, 3)
        batches = TensorBatches([x, y], batch_size, seed=0)
        batches.steps_per_epoch = 64 // batch_size  # same sample order: micro-batches tile the big batch

        def loss_fn(m, batch):
            return F.cross_entropy(m(batch[0]), batch[1]), {}

        run(cfg, tmp_path / f"a{accum}", build=lambda config: Experiment(model, loss_fn, batches))
        return model.weight.detach()

    # the permutation differs by batch size, so compare one full-data step per optimizer step
    assert torch.allclose(trained_weight(64, 1), trained_weight(32, 2), atol=1e-5)


def test_corrupt_weights_are_a_clear_error(tiny_fashion, tmp_path):
    train(tiny_cfg(tiny_fashion, steps=2), tmp_path / "run")
    (tmp_path / "run" / "model.safetensors").write_bytes(b"garbage")
    try:
        load_weights(create_model("mixer_tiny_28"), tmp_path / "run" / "model.safetensors")
        raise AssertionError("expected CheckpointError")
    except CheckpointError as err:
        assert "model.safetensors: corrupt weights file" in str(err)


def test_compiled_model_saves_uncompiled_names(tmp_path):
    from allmlp.checkpoint import save_weights

    model = create_model("mixer_tiny_28", depth=1)
    compiled = torch.compile(model, backend="eager")
    save_weights(compiled, tmp_path / "w.safetensors")
    fresh = create_model("mixer_tiny_28", depth=1)
    load_weights(fresh, tmp_path / "w.safetensors")
    from safetensors.torch import load_file

    names = load_file(str(tmp_path / "w.safetensors")).keys()
    assert not any(n.startswith("_orig_mod") for n in names) and "stem.proj.weight" in names
    assert torch.equal(fresh.stem.proj.weight, model.stem.proj.weight)


def test_fp16_on_cpu_is_a_clear_error(tmp_path):
    from allmlp.config import ConfigError

    cfg = build_config("fashion_mixer", ["train.precision=16-mixed", "train.accelerator=cpu"])
    try:
        run(cfg, tmp_path / "run")
        raise AssertionError("expected ConfigError")
    except ConfigError as err:
        assert "needs a GPU" in str(err)


def test_progress_bar_follows_the_clock_under_a_time_budget():
    from allmlp.engine import _Progress

    bar = _Progress(True, total_steps=1_000_000, start_step=0, budget_seconds=120, elapsed=30)
    task = bar.bar.tasks[0]
    assert (task.total, task.completed) == (120, 30)  # seconds, not steps: "left" is the budget's remainder
    bar.update(step=500, elapsed=90)
    assert task.completed == 90 and task.fields["steps"] == "step 500"
    bar.update(step=700, elapsed=200)  # the last step may end past the budget
    assert task.completed == 120
    bar.close()
    steps_bar = _Progress(True, total_steps=400, start_step=100, budget_seconds=0, elapsed=0)
    assert (steps_bar.bar.tasks[0].total, steps_bar.bar.tasks[0].completed) == (400, 100)
    steps_bar.close()
