"""ResMLP and gMLP (counts pinned to timm's), the feature split of every vision model, stochastic depth,
non-square images and patches, and evaluation at other image sizes."""

import pytest
import torch

from allmlp.models import count_parameters, create_model, list_models, model_info
from allmlp.models.blocks import DropPath, drop_path_rates
from allmlp.models.features import block_indices, resize_token_mixing
from allmlp.models.gmlp_vision import PAPER_VARIANTS as GMLP_VARIANTS
from allmlp.models.mixer import PAPER_VARIANTS as MIXER_VARIANTS
from allmlp.models.resmlp import PAPER_VARIANTS as RESMLP_VARIANTS


def resmlp_formula(patch, hidden, depth, img=224, in_chans=3, classes=1000, mlp_ratio=4):
    """ResMLP parameters by hand: stem, per block 2 Affines + N x N linear + 2 LayerScales + channel MLP; Affine,
    head."""
    n, inner = (img // patch) ** 2, int(hidden * mlp_ratio)
    block = 4 * hidden + (n * n + n) + 2 * hidden + (hidden * inner + inner + inner * hidden + hidden)
    return in_chans * patch * patch * hidden + hidden + depth * block + 2 * hidden + hidden * classes + classes


def gmlp_formula(patch, hidden, depth, img=224, in_chans=3, classes=1000, mlp_ratio=6):
    """gMLP parameters by hand: stem, per block LN + fc1 + gate (LN over half + N x N linear) + fc2, LN, head."""
    n, inner = (img // patch) ** 2, int(hidden * mlp_ratio)
    block = 2 * hidden + (hidden * inner + inner) + (inner + n * n + n) + (inner // 2 * hidden + hidden)
    return in_chans * patch * patch * hidden + hidden + depth * block + 2 * hidden + hidden * classes + classes


# timm's figures for resmlp_{12,24,36,big_24}_224 and gmlp_{ti16,s16,b16}_224 (15.35M, 30.02M, 44.69M, 129.14M,
# 5.87M, 19.42M, 73.08M), here exact; the same as the ResMLP and gMLP papers' tables (15M, 30M, 45M, 129M; 6M, 20M,
# 73M) at their rounding.
PUBLISHED = {
    "resmlp_12": 15_350_872, "resmlp_24": 30_020_680, "resmlp_36": 44_690_488, "resmlp_b24": 129_138_280,
    "gmlp_ti16": 5_867_328, "gmlp_s16": 19_422_656, "gmlp_b16": 73_075_392,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_paper_variant_parameter_counts(name):
    with torch.device("meta"):
        model = create_model(name)
    formula = resmlp_formula(*RESMLP_VARIANTS[name][:3]) if name in RESMLP_VARIANTS \
        else gmlp_formula(*GMLP_VARIANTS[name])
    assert count_parameters(model) == PUBLISHED[name] == formula


@pytest.mark.parametrize("name, expected", [("resmlp_tiny_28", 280_274), ("resmlp_tiny_32", 291_210),
                                            ("gmlp_tiny_28", 313_042), ("gmlp_tiny_32", 323_978)])
def test_tiny_variant_parameter_counts(name, expected):
    model = create_model(name)
    info = model_info(name)
    args = dict(img=info["input_size"][1], in_chans=info["input_size"][0], classes=10)
    formula = resmlp_formula(4, 128, 4, mlp_ratio=2, **args) if "resmlp" in name else \
        gmlp_formula(4, 128, 4, mlp_ratio=3, **args)
    assert count_parameters(model) == expected == formula


def test_layerscale_init_and_gate_init():
    resmlp = create_model("resmlp_24", img_size=32, depth=1)
    assert torch.all(resmlp.blocks[0].ls1 == 1e-5) and torch.all(resmlp.blocks[0].norm1.alpha == 1)
    gmlp = create_model("gmlp_tiny_28")
    gate = gmlp.blocks[0].channel_mixing.gate.token_mixing
    assert torch.all(gate.bias == 1) and gate.weight.abs().max() < 1e-4


def small(name, **extra):
    """Every image model at a small size (paper variants shrunk to a 2x2 grid and one block) with its input."""
    info = model_info(name)
    variants = {**MIXER_VARIANTS, **RESMLP_VARIANTS, **GMLP_VARIANTS}
    if name in variants:
        size = 2 * variants[name][0]
        return create_model(name, img_size=size, num_classes=7, depth=1, **extra), torch.randn(2, 3, size, size)
    return create_model(name, **extra), torch.randn(2, *info["input_size"])


@pytest.mark.parametrize("name", list_models("image"))
def test_forward_is_head_of_features_and_intermediates_have_map_shapes(name):
    torch.manual_seed(0)
    model, x = small(name)
    model.eval()
    for p in model.parameters():  # zero heads (Mixer, gMLP init) would make the equality trivial
        torch.nn.init.normal_(p, std=0.1)
    features = model.forward_features(x)
    assert torch.allclose(model.forward_head(features), model(x), atol=1e-6)
    pooled = model.forward_head(features, pre_logits=True)
    assert pooled.ndim == 2 and pooled.shape[0] == 2
    maps = model.forward_intermediates(x, indices=1)
    assert len(maps) == 1 and maps[0].shape[0] == 2
    if name.startswith(("mixer_", "resmlp_", "gmlp_")):
        grid = model.stem.grid_size
        assert maps[0].shape == (2, features.shape[-1], *grid)
        last = model.norm(maps[0].flatten(2).transpose(1, 2))  # the last block's map, normalised, is the features
        assert torch.allclose(last, features, atol=1e-6)


def test_intermediates_after_chosen_blocks():
    torch.manual_seed(0)
    model = create_model("mixer_tiny_28", depth=4).eval()
    x = torch.randn(3, 1, 28, 28)
    maps = model.forward_intermediates(x, indices=[0, -1])
    assert [m.shape for m in maps] == [(3, 128, 7, 7)] * 2
    tokens = model.stem(x)
    after_first = model.blocks[0](tokens)
    assert torch.allclose(maps[0], after_first.transpose(1, 2).reshape(3, 128, 7, 7), atol=1e-6)
    resnet = create_model("resnet20").eval()
    shapes = [m.shape for m in resnet.forward_intermediates(torch.randn(2, 3, 32, 32), indices=[2, 5, 8])]
    assert shapes == [(2, 16, 32, 32), (2, 32, 16, 16), (2, 64, 8, 8)]
    reference = create_model("mlp_mixer_seed").eval()
    assert [m.shape for m in reference.forward_intermediates(torch.randn(2, 1, 28, 28), 2)] == [(2, 128, 4, 4)] * 2


def test_block_indices_rules_and_errors():
    assert block_indices(6, 2) == [4, 5] and block_indices(6, [-1, 0, 0]) == [0, 5]
    assert block_indices(3, None) == [0, 1, 2]
    with pytest.raises(ValueError, match="block index 6 out of range: the model has 6 blocks"):
        block_indices(6, [6])
    with pytest.raises(ValueError, match="indices=7: the model has 6 blocks"):
        block_indices(6, 7)


def test_drop_path_rates_rise_linearly_and_reach_the_blocks():
    assert drop_path_rates(0.3, 4) == pytest.approx([0.0, 0.1, 0.2, 0.3])
    model = create_model("resmlp_tiny_28", drop_path_rate=0.2)
    assert [b.drop_path.rate for b in model.blocks] == pytest.approx([0.0, 0.2 / 3, 0.4 / 3, 0.2])
    with pytest.raises(ValueError, match=r"model.drop_path_rate must be in \[0, 1\), got 1.5"):
        create_model("mixer_tiny_28", drop_path_rate=1.5)


def test_drop_path_is_identity_in_eval_and_drops_whole_samples_in_training():
    x = torch.randn(4000, 3, 5) + 2
    drop = DropPath(0.25)
    assert torch.equal(drop.eval()(x), x)
    torch.manual_seed(0)
    y = drop.train()(x)
    kept = (y != 0).flatten(1).all(1)
    dropped = (y == 0).flatten(1).all(1)
    assert torch.all(kept | dropped)  # each sample is kept or dropped whole
    assert abs(dropped.float().mean().item() - 0.25) < 0.03
    assert torch.allclose(y[kept], x[kept] / 0.75)  # kept ones rescaled: the expectation is unchanged
    eval_model = create_model("gmlp_tiny_28", drop_path_rate=0.5).eval()
    plain = create_model("gmlp_tiny_28").eval()
    plain.load_state_dict(eval_model.state_dict())
    images = torch.randn(2, 1, 28, 28)
    assert torch.equal(eval_model(images), plain(images))


@pytest.mark.parametrize("name", ["mixer_tiny_28", "resmlp_tiny_28", "gmlp_tiny_28"])
def test_non_square_images_and_patches_train_and_evaluate(name):
    torch.manual_seed(0)
    model = create_model(name, img_size=(20, 36), patch_size=(4, 6), num_classes=3)
    assert model.stem.grid_size == (5, 6)
    x, y = torch.randn(8, 1, 20, 36), torch.randint(0, 3, (8,))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):  # learns a fixed batch: the non-square path is trainable end to end
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    maps = model.eval().forward_intermediates(x, indices=1)
    assert maps[0].shape == (8, 128, 5, 6)


@pytest.mark.parametrize("name", ["mixer_tiny_28", "resmlp_tiny_28", "gmlp_tiny_28"])
def test_eval_at_another_size_equals_a_model_resized_by_the_finetune_rule(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    big = create_model(name, img_size=(36, 32)).eval()  # a 9x8 grid
    big.load_state_dict(resize_token_mixing(model.state_dict(), (7, 7), (9, 8)))
    x = torch.randn(2, 1, 36, 32)
    assert torch.allclose(model(x), big(x), atol=1e-5)
    assert model.forward_intermediates(x, 1)[0].shape[-2:] == (9, 8)


def test_other_sizes_are_errors_in_training_or_off_the_patch_grid():
    model = create_model("resmlp_tiny_28")
    with pytest.raises(ValueError, match="ResMlp trains on 28x28 images .model.img_size., got 32x32"):
        model.train()(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="height is a multiple of 4 and width a multiple of 4 .* got 30x28"):
        model.eval()(torch.randn(1, 1, 30, 28))
    with pytest.raises(ValueError, match=r"expects images of shape \(B, 1, 28, 28\), got \(1, 3, 28, 28\)"):
        model(torch.randn(1, 3, 28, 28))


def test_non_square_patches_through_train_reload_and_eval_at_a_non_square_size(tiny_fashion, tmp_path, capsys):
    from allmlp.checkpoint import load_run
    from allmlp.cli import main

    run = tmp_path / "run"
    code = main(["train", "fashion_mixer", f"data.path={tiny_fashion}", "model.name=gmlp_tiny_28",
                 "model.patch_size=[7, 4]", "model.depth=2", "data.val_size=64", "data.batch_size=32",
                 "train.max_steps=2", "train.progress=false", "--run-dir", str(run)])
    assert code == 0, capsys.readouterr().err
    model, cfg, _ = load_run(run)  # config.yaml keeps the pair
    assert tuple(cfg.model.args["patch_size"]) == (7, 4) and model.stem.grid_size == (4, 7)
    assert main(["eval", str(run)]) == 0
    wide = torch.randn(3, 1, 28, 40)  # 4 x 10 patches: token mixing resized from 4 x 7 on the fly
    assert model(wide).shape == (3, 10) and model.forward_intermediates(wide, 1)[0].shape == (3, 128, 4, 10)


@pytest.mark.parametrize("name", ["resmlp_tiny_28", "gmlp_tiny_28"])
def test_token_mixing_figures_read_the_n_by_n_linear_layers(name, tmp_path):
    from allmlp import viz

    model = create_model(name, depth=3)
    units = viz.vision_token_mixing_units(model)
    linears = [m.token_mixing.weight for m in model.modules() if isinstance(getattr(m, "token_mixing", None),
                                                                           torch.nn.Linear)]
    assert len(units) == 3 and all(u.shape == (49, 7, 7) for u in units)
    assert torch.equal(units[0].reshape(49, 49), linears[0].detach())
    assert viz.plot_token_mixing_patches(units, tmp_path / "t.png").stat().st_size > 1000
