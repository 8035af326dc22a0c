"""cifar10_mixer_72, the Keras CIFAR-10 Mixer project's setting: CIFAR-10 resized to 72 px, 9x9 patches (64
tokens), trained on pickle batches."""

import dataclasses

import torch

from allmlp.checkpoint import load_run
from allmlp.cli import main
from allmlp.configure import build_config
from allmlp.models import count_parameters, create_model


def test_cifar10_mixer_72_is_the_32px_recipe_at_72px_with_9x9_patches():
    resized, small = build_config("cifar10_mixer_72"), build_config("cifar10_mixer_4")
    model = create_model(resized.model.name, **{**resized.model.args, "img_size": resized.data.img_size})
    assert model.stem.patch_size == (9, 9) and model.stem.grid_size == (8, 8)
    # the same Mixer as the 32-px preset's but for a 9x9x3 patch stem (243 inputs instead of 48)
    assert count_parameters(model) == 175_242 + (243 - 48) * 128 == 200_202
    assert resized.optim == small.optim and resized.train == small.train
    differ = {f.name for f in dataclasses.fields(resized.data)
              if getattr(resized.data, f.name) != getattr(small.data, f.name)}
    assert differ == {"img_size", "crop_padding"}


def test_cifar10_mixer_72_trains_and_evaluates_on_pickle_batches(tmp_path, tiny_cifar, tiny_run, capsys):
    run = tiny_run(tmp_path, "cifar10_mixer_72", f"data.path={tiny_cifar}", "data.batch_size=8", "data.val_size=8",
                   "train.max_steps=3")
    model, cfg, _ = load_run(run)
    assert cfg.model.args["img_size"] == 72 and model(torch.randn(1, 3, 72, 72)).shape == (1, 10)
    assert main(["eval", str(run)]) == 0  # evaluation resizes the 32 px test images as training did
    assert "test/acc" in capsys.readouterr().out
