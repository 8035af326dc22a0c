"""The seed-003 preset: CIFAR-10 resized to 72 px, 9x9 patches (64 tokens), trained on pickle batches."""

import dataclasses

import torch

from allmlp.checkpoint import load_run
from allmlp.cli import main
from allmlp.configure import build_config
from allmlp.models import count_parameters, create_model


def test_seed003_preset_is_the_32px_recipe_at_72px_with_9x9_patches():
    seed, small = build_config("cifar10_mixer_72"), build_config("cifar10_mixer_4")
    model = create_model(seed.model.name, **{**seed.model.args, "img_size": seed.data.img_size})
    assert model.stem.patch_size == (9, 9) and model.stem.grid_size == (8, 8)
    # the same Mixer as the 32-px preset's but for a 9x9x3 patch stem (243 inputs instead of 48)
    assert count_parameters(model) == 175_242 + (243 - 48) * 128 == 200_202
    assert seed.optim == small.optim and seed.train == small.train
    differ = {f.name for f in dataclasses.fields(seed.data)
              if getattr(seed.data, f.name) != getattr(small.data, f.name)}
    assert differ == {"img_size", "crop_padding"}


def test_seed003_preset_trains_and_evaluates_on_pickle_batches(tmp_path, tiny_cifar, capsys):
    run = tmp_path / "run"
    code = main(["train", "cifar10_mixer_72", f"data.path={tiny_cifar}", "data.batch_size=8", "data.val_size=8",
                 "train.max_epochs=0", "train.max_steps=3", "train.progress=false", "--run-dir", str(run)])
    assert code == 0, capsys.readouterr().err
    model, cfg, _ = load_run(run)
    assert cfg.model.args["img_size"] == 72 and model(torch.randn(1, 3, 72, 72)).shape == (1, 10)
    assert main(["eval", str(run)]) == 0  # evaluation resizes the 32 px test images as training did
    assert "test/acc" in capsys.readouterr().out
