"""ResMLP (timm and official DeiT layouts) and gMLP (timm layout) weights: exact conversion against forwards written
here in plain torch ops, the resize-to-a-new-grid rule, and `allmlp finetune` on them."""

import math

import pytest
import torch
import torch.nn.functional as F

from allmlp.checkpoint import load_run
from allmlp.cli import main
from allmlp.models import create_model
from allmlp.pretrained import PretrainedError, load_pretrained, read_weights, resize_token_mixing

PATCH, HIDDEN, CLASSES, IMG = 4, 16, 5, 16  # a 4x4 grid: 16 tokens


def rand(generator, *shape):
    return torch.randn(*shape, generator=generator) * 0.3


def resmlp_source(layout: str, depth=2, tokens=16, hidden=HIDDEN, seed=0) -> dict[str, torch.Tensor]:
    """Random ResMLP weights under timm's names (`layout="timm"`) or the official DeiT repository's ("official")."""
    g = torch.Generator().manual_seed(seed)
    timm = layout == "timm"
    affine = (1, 1, hidden) if timm else (hidden,)
    names = {"stem": "stem" if timm else "patch_embed", "tokens": "linear_tokens" if timm else "attn",
             "mlp": "mlp_channels" if timm else "mlp", "ls": ("ls1", "ls2") if timm else ("gamma_1", "gamma_2")}
    stem = names["stem"]
    state = {f"{stem}.proj.weight": rand(g, hidden, 3, PATCH, PATCH), f"{stem}.proj.bias": rand(g, hidden),
             "norm.alpha": 1 + rand(g, *affine), "norm.beta": rand(g, *affine),
             "head.weight": rand(g, CLASSES, hidden), "head.bias": rand(g, CLASSES)}
    for i in range(depth):
        b = f"blocks.{i}."
        for norm in ("norm1", "norm2"):
            state[f"{b}{norm}.alpha"], state[f"{b}{norm}.beta"] = 1 + rand(g, *affine), rand(g, *affine)
        tok, mlp = f"{b}{names['tokens']}", f"{b}{names['mlp']}"
        state[f"{tok}.weight"], state[f"{tok}.bias"] = rand(g, tokens, tokens), rand(g, tokens)
        state[f"{mlp}.fc1.weight"], state[f"{mlp}.fc1.bias"] = rand(g, 4 * hidden, hidden), rand(g, 4 * hidden)
        state[f"{mlp}.fc2.weight"], state[f"{mlp}.fc2.bias"] = rand(g, hidden, 4 * hidden), rand(g, hidden)
        state[f"{b}{names['ls'][0]}"], state[f"{b}{names['ls'][1]}"] = rand(g, hidden), rand(g, hidden)
    return state


def gmlp_source(depth=2, tokens=16, hidden=HIDDEN, ratio=6, seed=0) -> dict[str, torch.Tensor]:
    """Random gMLP weights under timm's names (`blocks.{i}.mlp_channels.gate.proj`, ...)."""
    g = torch.Generator().manual_seed(seed)
    inner = ratio * hidden
    state = {"stem.proj.weight": rand(g, hidden, 3, PATCH, PATCH), "stem.proj.bias": rand(g, hidden),
             "norm.weight": 1 + rand(g, hidden), "norm.bias": rand(g, hidden),
             "head.weight": rand(g, CLASSES, hidden), "head.bias": rand(g, CLASSES)}
    for i in range(depth):
        b = f"blocks.{i}."
        state[f"{b}norm.weight"], state[f"{b}norm.bias"] = 1 + rand(g, hidden), rand(g, hidden)
        state[f"{b}mlp_channels.fc1.weight"] = rand(g, inner, hidden)
        state[f"{b}mlp_channels.fc1.bias"] = rand(g, inner)
        state[f"{b}mlp_channels.gate.norm.weight"] = 1 + rand(g, inner // 2)
        state[f"{b}mlp_channels.gate.norm.bias"] = rand(g, inner // 2)
        state[f"{b}mlp_channels.gate.proj.weight"], state[f"{b}mlp_channels.gate.proj.bias"] = \
            rand(g, tokens, tokens), 1 + rand(g, tokens)
        state[f"{b}mlp_channels.fc2.weight"] = rand(g, hidden, inner // 2)
        state[f"{b}mlp_channels.fc2.bias"] = rand(g, hidden)
    return state


def gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def layer_norm(x, weight, bias, eps):
    mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def patches(images, weight, bias):
    """Non-overlapping patches as a matrix product: (B, 3, H, W) -> (B, N, C), tokens row-major over the grid."""
    b, c, h, w = images.shape
    p = weight.shape[-1]
    x = images.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // p) * (w // p), c * p * p)
    return x @ weight.reshape(weight.shape[0], -1).T + bias


def resmlp_reference(p, images, depth, timm):
    """ResMLP forward of the paper on the source tensors as stored (timm or official names)."""
    stem, tokens, mlp, ls = ("stem", "linear_tokens", "mlp_channels", ("ls1", "ls2")) if timm else \
        ("patch_embed", "attn", "mlp", ("gamma_1", "gamma_2"))

    def affine(x, name):
        return x * p[f"{name}.alpha"].reshape(-1) + p[f"{name}.beta"].reshape(-1)

    x = patches(images, p[f"{stem}.proj.weight"], p[f"{stem}.proj.bias"])
    for i in range(depth):
        b = f"blocks.{i}."
        y = affine(x, f"{b}norm1")  # (B, N, C)
        mixed = torch.einsum("mn,bnc->bmc", p[f"{b}{tokens}.weight"], y) + p[f"{b}{tokens}.bias"][None, :, None]
        x = x + p[f"{b}{ls[0]}"] * mixed
        y = affine(x, f"{b}norm2")
        h = gelu(y @ p[f"{b}{mlp}.fc1.weight"].T + p[f"{b}{mlp}.fc1.bias"])
        x = x + p[f"{b}{ls[1]}"] * (h @ p[f"{b}{mlp}.fc2.weight"].T + p[f"{b}{mlp}.fc2.bias"])
    return affine(x, "norm").mean(1) @ p["head.weight"].T + p["head.bias"]


def gmlp_reference(p, images, depth):
    """gMLP forward of the paper on timm-named tensors: LN, fc1, GELU, spatial gating, fc2, residual."""
    x = patches(images, p["stem.proj.weight"], p["stem.proj.bias"])
    for i in range(depth):
        b = f"blocks.{i}.mlp_channels."
        y = layer_norm(x, p[f"blocks.{i}.norm.weight"], p[f"blocks.{i}.norm.bias"], 1e-6)
        h = gelu(y @ p[f"{b}fc1.weight"].T + p[f"{b}fc1.bias"])
        u, v = h[..., :h.shape[-1] // 2], h[..., h.shape[-1] // 2:]
        v = layer_norm(v, p[f"{b}gate.norm.weight"], p[f"{b}gate.norm.bias"], 1e-5)
        v = torch.einsum("mn,bnc->bmc", p[f"{b}gate.proj.weight"], v) + p[f"{b}gate.proj.bias"][None, :, None]
        x = x + (u * v) @ p[f"{b}fc2.weight"].T + p[f"{b}fc2.bias"]
    return layer_norm(x, p["norm.weight"], p["norm.bias"], 1e-6).mean(1) @ p["head.weight"].T + p["head.bias"]


def small(name, **extra):
    return create_model(name, img_size=IMG, patch_size=PATCH, hidden_dim=HIDDEN, depth=2, num_classes=CLASSES,
                        **extra).eval()


@pytest.mark.parametrize("layout", ["timm", "official"])
def test_resmlp_weights_give_the_reference_logits(tmp_path, layout):
    source = resmlp_source(layout)
    torch.save({"model": source} if layout == "official" else source, tmp_path / "resmlp.pth")  # DeiT wraps in "model"
    model = small("resmlp_12")
    assert load_pretrained(model, read_weights(tmp_path / "resmlp.pth")) == {"resized": None, "new_head": False}
    images = torch.randn(3, 3, IMG, IMG, generator=torch.Generator().manual_seed(1))
    expected = resmlp_reference(source, images, depth=2, timm=layout == "timm")
    assert torch.allclose(model(images), expected, atol=1e-5)


def test_gmlp_weights_give_the_reference_logits(tmp_path):
    source = gmlp_source()
    torch.save(source, tmp_path / "gmlp.pth")
    model = small("gmlp_s16")
    load_pretrained(model, read_weights(tmp_path / "gmlp.pth"))
    images = torch.randn(3, 3, IMG, IMG, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(model(images), gmlp_reference(source, images, depth=2), atol=1e-5)


@pytest.mark.parametrize("name, source", [("resmlp_12", resmlp_source("timm")), ("gmlp_s16", gmlp_source())])
def test_new_grid_uses_the_mixer_resize_rule(tmp_path, name, source):
    torch.save(source, tmp_path / "w.pth")
    converted = read_weights(tmp_path / "w.pth")
    model = create_model(name, img_size=32, patch_size=PATCH, hidden_dim=HIDDEN, depth=2, num_classes=3)
    report = load_pretrained(model, converted, new_head=True)
    assert report == {"resized": "4x4 -> 8x8 patches", "new_head": True}
    expected = resize_token_mixing(converted, (4, 4), (8, 8))
    for key, value in model.state_dict().items():
        if "token_mixing" in key:
            assert value.shape[0] == 64 and torch.equal(value, expected[key]), key
    # a nearest 2x upscale repeats tokens; the weights that read tokens are scaled by N/N' = 1/4
    nearest = resize_token_mixing(converted, (4, 4), (8, 8), mode="nearest")
    key = "blocks.0.token_mixing.weight" if name == "resmlp_12" else "blocks.0.channel_mixing.gate.token_mixing.weight"
    assert torch.allclose(nearest[key][0, 0], converted[key][0, 0] / 4)


def test_resmlp_weights_in_a_gmlp_are_a_listed_mismatch(tmp_path):
    torch.save(resmlp_source("timm"), tmp_path / "resmlp.pth")
    with pytest.raises(PretrainedError, match=r"weights do not fit GmlpVision with 2 blocks \(missing: .*unexpected"):
        load_pretrained(small("gmlp_s16"), read_weights(tmp_path / "resmlp.pth"))


def test_finetune_cli_trains_resmlp_from_official_weights(tmp_path, tiny_cifar, capsys):
    torch.save({"model": resmlp_source("official")}, tmp_path / "resmlp_official.pth")
    code = main(["finetune", "--weights", str(tmp_path / "resmlp_official.pth"), "cifar10_mixer_1",
                 f"data.path={tiny_cifar}", "--model", "resmlp_12", "model.img_size=32", "model.patch_size=4",
                 "model.hidden_dim=16", "model.depth=2", "data.batch_size=16", "data.val_size=0",
                 "train.max_steps=2", "train.max_epochs=0", "train.progress=false", "--run-dir", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "token mixing resized 4x4 -> 8x8 patches, new head" in out
    model, cfg, _ = load_run(tmp_path / "run")
    assert cfg.model.name == "resmlp_12" and model.blocks[0].token_mixing.weight.shape == (64, 64)
