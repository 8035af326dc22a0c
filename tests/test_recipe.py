"""The training recipe's keys: mixup / cutmix with soft labels, random erasing, the EMA of the weights (update rule,
saved file, evaluation, bitwise resume), image resizing, all as functions of the batch's own generator."""

import os
import signal

import pytest
import torch

from allmlp.checkpoint import EMA_WEIGHTS, load_trainer_state, load_weights
from allmlp.config import ConfigError
from allmlp.configure import build_config
from allmlp.data.batches import generator_for
from allmlp.data.mixing import mix_batch, random_erasing
from allmlp.ema import WeightEma
from allmlp.models import create_model
from allmlp.tasks import build_experiment
from test_engine import train  # the engine tests' way to build and fit a config

B = 8


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, 3, 12, 10, generator=g), torch.arange(B)  # every label distinct: the mix is readable


def test_mixup_blends_images_as_the_soft_labels_say():
    x, y = batch()
    out, targets = mix_batch(x, y, B, generator_for(0, 1), mixup_alpha=0.4)
    assert torch.allclose(targets.sum(1), torch.ones(B))
    partner = torch.arange(B).flip(0)
    lam, rest = targets[torch.arange(B), y], targets[torch.arange(B), partner]
    assert torch.allclose(lam + rest, torch.ones(B)) and (lam < 1).all()  # mix_prob 1: every sample mixed
    expected = lam[:, None, None, None] * x + rest[:, None, None, None] * x[partner]
    assert torch.allclose(out, expected, atol=1e-6)


def test_cutmix_pastes_a_box_whose_area_is_the_partner_label_share():
    x, y = batch()
    out, targets = mix_batch(x, y, B, generator_for(0, 2), cutmix_alpha=1.0)
    partner = torch.arange(B).flip(0)
    from_partner = (out == x[partner]).all(1)  # (B, H, W): pixels taken from the partner
    assert torch.all(from_partner | (out == x).all(1))  # every pixel is one image's or the other's
    share = from_partner.flatten(1).float().mean(1)
    assert torch.allclose(share, targets[torch.arange(B), partner], atol=1e-6)
    assert torch.allclose(targets.sum(1), torch.ones(B)) and share.max() > 0


def test_mix_prob_and_both_modes_and_determinism():
    x, y = torch.rand(4000, 1, 6, 6), torch.randint(0, 10, (4000,))
    out, targets = mix_batch(x, y, 10, generator_for(3, 4), mixup_alpha=0.2, cutmix_alpha=1.0, mix_prob=0.3)
    mixed = ~(out == x).flatten(1).all(1)
    assert abs(mixed.float().mean().item() - 0.3) < 0.04  # a few cutmix boxes come out empty
    assert torch.allclose(targets.sum(1), torch.ones(4000))
    again = mix_batch(x, y, 10, generator_for(3, 4), mixup_alpha=0.2, cutmix_alpha=1.0, mix_prob=0.3)
    assert torch.equal(again[0], out) and torch.equal(again[1], targets)
    plain, one_hot = mix_batch(x, y, 10, generator_for(3, 4), mixup_alpha=0.2, mix_prob=0.0)
    assert torch.equal(plain, x) and torch.equal(one_hot.argmax(1), y) and torch.all(one_hot.max(1).values == 1)


def test_random_erasing_fills_one_box_per_chosen_image():
    x = torch.full((500, 2, 20, 20), 7.0)
    out = random_erasing(x, 0.5, generator_for(0, 5))
    erased = (out != 7.0).any(1)  # (B, H, W)
    chosen = erased.flatten(1).any(1)
    assert abs(chosen.float().mean().item() - 0.5) < 0.08
    area = erased.flatten(1).float().mean(1)[chosen]
    assert area.max() <= 1 / 3 + 0.05 and area.min() >= 0.005  # boxes of 2%..33% of the image, clipped at edges
    rows, cols = erased.any(2), erased.any(1)  # an erased region is one rectangle
    assert torch.equal(erased.flatten(1).sum(1), rows.sum(1) * cols.sum(1))
    assert torch.equal(random_erasing(x, 0.0, generator_for(0, 5)), x)


def test_ema_update_rule():
    torch.manual_seed(0)
    model = create_model("resnet20")
    ema = WeightEma(model, decay=0.9)
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    model.train()(torch.randn(4, 3, 32, 32))  # moves BatchNorm statistics and its integer step count
    ema.update(model)
    for name, value in model.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(ema.state_dict()[name], 0.9 * before[name] + 0.1 * value, atol=1e-6), name
        else:
            assert torch.equal(ema.state_dict()[name], value), name
    assert not any(p.requires_grad for p in ema.module.parameters())
    with pytest.raises(ValueError, match="train.ema_decay must be in"):
        WeightEma(model, 1.0)


def recipe_cfg(folder, steps, **extra):
    overrides = [f"data.path={folder}", "data.batch_size=32", f"train.max_steps={steps}", "train.eval_interval=0",
                 "train.checkpoint_interval=0", "train.progress=false", "train.log_interval=5", "data.val_size=64",
                 "model.name=resmlp_tiny_28", "model.hidden_dim=32", "model.depth=3", "model.patch_size=7",
                 "optim.warmup_steps=2", "data.mixup_alpha=0.2", "data.cutmix_alpha=1.0", "data.mix_prob=0.8",
                 "data.random_erasing=0.25", "model.drop_path_rate=0.2", "train.ema_decay=0.9"]
    return build_config("fashion_mixer", overrides + [f"{k}={v}" for k, v in extra.items()])


def test_training_batches_are_soft_labelled_and_a_function_of_seed_and_step(tiny_fashion):
    exp = build_experiment(recipe_cfg(tiny_fashion, 1))
    images, targets = exp.train_batches.batch(3)
    assert targets.shape == (32, 10) and torch.allclose(targets.sum(1), torch.ones(32))
    again = build_experiment(recipe_cfg(tiny_fashion, 1)).train_batches.batch(3)
    assert torch.equal(again[0], images) and torch.equal(again[1], targets)


def test_ema_is_evaluated_saved_and_resumed_bitwise(tiny_fashion, tmp_path):
    cfg = recipe_cfg(tiny_fashion, 20, **{"train.eval_interval": 10})
    straight, result = train(cfg, tmp_path / "straight")
    assert {"val_ema/acc", "test_ema/acc", "val/acc"} <= set(result)
    saved = create_model("resmlp_tiny_28", **cfg.model.args)
    load_weights(saved, tmp_path / "straight" / EMA_WEIGHTS)
    raw = straight.model.state_dict()
    assert any(not torch.equal(v, raw[k]) for k, v in saved.state_dict().items())  # the average, not a copy

    def interrupt(step, model, writer):  # Ctrl-C during step 10's evaluation
        if step == 10:
            os.kill(os.getpid(), signal.SIGINT)

    _, stopped = train(cfg, tmp_path / "broken", hooks=[interrupt])
    assert stopped["interrupted"] and "ema" in load_trainer_state(tmp_path / "broken")
    resumed, _ = train(cfg, tmp_path / "broken", resume=True)
    for name, value in resumed.model.state_dict().items():
        assert torch.equal(value, raw[name]), name
    resumed_ema = create_model("resmlp_tiny_28", **cfg.model.args)
    load_weights(resumed_ema, tmp_path / "broken" / EMA_WEIGHTS)
    for name, value in resumed_ema.state_dict().items():
        assert torch.equal(value, saved.state_dict()[name]), name


def test_resize_to_a_larger_side_reaches_model_and_evaluation(tiny_fashion):
    cfg = build_config("fashion_mixer", [f"data.path={tiny_fashion}", "data.img_size=36", "data.val_size=64",
                                         "model.patch_size=6", "data.augment=false"])
    exp = build_experiment(cfg)
    assert exp.train_batches.batch(0)[0].shape[-2:] == (36, 36) and exp.model.stem.grid_size == (6, 6)
    assert 0 <= exp.final_evaluate(exp.model.eval())["test/acc"] <= 1  # test is scored once, at the end


@pytest.mark.parametrize("override, message", [("data.mix_prob=1.5", "data.mix_prob=1.5: must be in"),
                                               ("data.mixup_alpha=-1", "data.mixup_alpha=-1"),
                                               ("train.ema_decay=1", r"train.ema_decay=1.0: must be in \[0, 1\)")])
def test_bad_recipe_values_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        build_config("fashion_mixer", [override])
