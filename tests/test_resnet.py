"""ResNet20 (He et al. CIFAR variant) and the CIFAR-10 recipes on batches in the official pickle format."""

import pytest
import torch

from allmlp.checkpoint import load_run
from allmlp.cli import main
from allmlp.configure import build_config
from allmlp.models import count_parameters, create_model

RECIPES = ["cifar10_mixer_1", "cifar10_mixer_2", "cifar10_mixer_4", "cifar10_mixer_8", "cifar10_resnet20"]


def test_resnet20_is_the_papers_cifar_variant():
    model = create_model("resnet20")
    assert count_parameters(model) == 269_722  # He et al. 2016, Table 6: 0.27M (the Keras CIFAR-10 project's: 0.57M)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 19 and {c.out_channels for c in convs} == {16, 32, 64}  # 19 conv + 1 linear = 20 layers
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_option_a_shortcut_pads_channels_without_parameters():
    block = create_model("resnet20").blocks[3]  # first block of stage 2: 16 -> 32 channels, stride 2
    x = torch.randn(1, 16, 8, 8)
    shortcut = block.shortcut(x)
    assert shortcut.shape == (1, 32, 4, 4) and not list(block.shortcut.parameters())
    assert torch.equal(shortcut[:, 8:24], x[:, :, ::2, ::2]) and shortcut[:, :8].abs().sum() == 0


def test_cifar_recipes_share_one_training_recipe():
    configs = [build_config(name) for name in RECIPES]
    shared = [(c.data, c.optim, c.train) for c in configs]
    assert all(s == shared[0] for s in shared)
    assert [c.model.args.get("depth") for c in configs] == [1, 2, 4, 8, None]
    params = [count_parameters(create_model(c.model.name, **c.model.args)) for c in configs]
    assert params == [49_674, 91_530, 175_242, 342_666, 269_722]


@pytest.mark.parametrize("preset", ["cifar10_mixer_2", "cifar10_resnet20"])
def test_cifar_pipeline_trains_and_evaluates_on_pickle_batches(tmp_path, tiny_cifar, capsys, preset, tiny_run):
    run = tiny_run(tmp_path, preset, f"data.path={tiny_cifar}", "data.batch_size=8", "data.val_size=8",
                   "train.max_steps=3")
    model, cfg, _ = load_run(run)
    assert cfg.data.name == "cifar10" and cfg.model.args["num_classes"] == 10
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert main(["eval", str(run)]) == 0
    assert "test/acc" in capsys.readouterr().out
