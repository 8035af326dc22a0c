"""Official Mixer .npz (flax names) and timm-layout imports, resizing to a new patch grid, and their errors."""

import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from allmlp.checkpoint import load_run
from allmlp.cli import main
from allmlp.models import create_model
from allmlp.models.blocks import MixerBlock
from allmlp.pretrained import PretrainedError, load_pretrained, read_weights, resize_token_mixing

SMALL = dict(img_size=16, patch_size=4, hidden_dim=16, depth=2, tokens_mlp_dim=8, channels_mlp_dim=32)


def official_arrays(depth=2, patch=4, chans=3, hidden=16, tokens=16, tokens_mlp=8, channels_mlp=32, classes=5,
                    seed=0) -> dict[str, np.ndarray]:
    """Random weights under the google-research Mixer names and shapes (HWIO conv, (in, out) dense kernels)."""
    rng = np.random.default_rng(seed)

    def rand(*shape):
        return rng.normal(0, 0.3, shape).astype(np.float32)

    arrays = {"stem/kernel": rand(patch, patch, chans, hidden), "stem/bias": rand(hidden),
              "pre_head_layer_norm/scale": 1 + rand(hidden), "pre_head_layer_norm/bias": rand(hidden),
              "head/kernel": rand(hidden, classes), "head/bias": rand(classes)}
    for i in range(depth):
        block = f"MixerBlock_{i}/"
        for norm in ("LayerNorm_0", "LayerNorm_1"):
            arrays[f"{block}{norm}/scale"], arrays[f"{block}{norm}/bias"] = 1 + rand(hidden), rand(hidden)
        for mlp, dim, inner in (("token_mixing", tokens, tokens_mlp), ("channel_mixing", hidden, channels_mlp)):
            arrays[f"{block}{mlp}/Dense_0/kernel"], arrays[f"{block}{mlp}/Dense_0/bias"] = rand(dim, inner), rand(inner)
            arrays[f"{block}{mlp}/Dense_1/kernel"], arrays[f"{block}{mlp}/Dense_1/bias"] = rand(inner, dim), rand(dim)
    return arrays


def flax_reference_logits(p: dict, images_nhwc: np.ndarray, depth: int, patch: int, eps: float = 1e-6,
                          tanh_gelu: bool = False):
    """The official Mixer forward written in numpy on the flax arrays (NHWC, kernels as stored)."""
    erf = np.vectorize(math.erf)

    def gelu(x):
        if tanh_gelu:  # flax nn.gelu's default
            return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
        return 0.5 * x * (1 + erf(x / math.sqrt(2)))

    def norm(x, name):
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + eps) * p[f"{name}/scale"] + p[f"{name}/bias"]

    def mlp(x, name):
        h = gelu(x @ p[f"{name}/Dense_0/kernel"] + p[f"{name}/Dense_0/bias"])
        return h @ p[f"{name}/Dense_1/kernel"] + p[f"{name}/Dense_1/bias"]

    b, h, w, c = images_nhwc.shape
    patches = images_nhwc.reshape(b, h // patch, patch, w // patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
    x = patches.reshape(b, (h // patch) * (w // patch), patch * patch * c) @ p["stem/kernel"].reshape(-1, p[
        "stem/kernel"].shape[-1]) + p["stem/bias"]  # (B, N, C), tokens row-major over the grid
    for i in range(depth):
        y = mlp(norm(x, f"MixerBlock_{i}/LayerNorm_0").swapaxes(1, 2), f"MixerBlock_{i}/token_mixing")
        x = x + y.swapaxes(1, 2)
        x = x + mlp(norm(x, f"MixerBlock_{i}/LayerNorm_1"), f"MixerBlock_{i}/channel_mixing")
    return norm(x, "pre_head_layer_norm").mean(1) @ p["head/kernel"] + p["head/bias"]


def small_mixer(**extra):
    return create_model("mixer_s16", **{**SMALL, "num_classes": 5, **extra}).eval()


@pytest.mark.parametrize("gelu", ["none", "tanh"])
def test_official_npz_gives_the_flax_reference_logits(tmp_path, gelu):
    arrays = official_arrays()
    np.savez(tmp_path / "Mixer-S_4.npz", **arrays)
    model = small_mixer(gelu=gelu)
    report = load_pretrained(model, read_weights(tmp_path / "Mixer-S_4.npz"))
    assert report == {"resized": None, "new_head": False}
    images = np.random.default_rng(1).normal(size=(3, 16, 16, 3)).astype(np.float32)
    expected = flax_reference_logits(arrays, images.astype(np.float64), depth=2, patch=4, tanh_gelu=gelu == "tanh")
    other = flax_reference_logits(arrays, images.astype(np.float64), depth=2, patch=4, tanh_gelu=gelu != "tanh")
    with torch.no_grad():
        got = model(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
    assert np.abs(got - expected).max() < 1e-6  # float32 against float64
    assert np.abs(got - other).max() > 1e-5  # the switch matters: the two GELUs are told apart


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_timm_layout_round_trip_gives_identical_logits(tmp_path, suffix):
    torch.manual_seed(0)
    source = small_mixer()
    for p in source.parameters():  # the zero-initialised head would hide a head that failed to load
        torch.nn.init.normal_(p, std=0.2)
    timm_state = {k.replace("token_mixing.", "mlp_tokens.").replace("channel_mixing.", "mlp_channels."): v.clone()
                  for k, v in source.state_dict().items()}
    assert "blocks.1.mlp_tokens.fc1.weight" in timm_state and "stem.proj.weight" in timm_state
    path = tmp_path / f"mixer{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": timm_state}, path)
    else:
        save_file(timm_state, str(path))
    target = small_mixer()
    load_pretrained(target, read_weights(path))
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(target(x), source(x))


def test_missing_unexpected_and_wrong_shape_keys_are_listed(tmp_path):
    arrays = official_arrays()
    del arrays["MixerBlock_1/token_mixing/Dense_0/kernel"]
    arrays["MixerBlock_0/Extra_0/kernel"] = np.zeros(3, np.float32)
    np.savez(tmp_path / "broken.npz", **arrays)
    with pytest.raises(PretrainedError) as err:
        load_pretrained(small_mixer(), read_weights(tmp_path / "broken.npz"))
    message = str(err.value)
    assert "missing: blocks.1.token_mixing.fc1.weight" in message
    assert "unexpected: MixerBlock_0/Extra_0/kernel" in message

    np.savez(tmp_path / "wide.npz", **official_arrays(channels_mlp=24))
    with pytest.raises(PretrainedError, match=r"wrong shape: blocks.0.channel_mixing.fc1.bias \(24,\) vs model \(32,\)"):
        load_pretrained(small_mixer(), read_weights(tmp_path / "wide.npz"))
    with pytest.raises(PretrainedError, match="missing: blocks.2.channel_mixing"):
        load_pretrained(small_mixer(depth=3), read_weights(tmp_path / "wide.npz"))


def test_patch_size_and_non_square_grid_errors(tmp_path):
    np.savez(tmp_path / "p4.npz", **official_arrays())
    with pytest.raises(PretrainedError, match=r"set model.patch_size=4"):
        load_pretrained(small_mixer(patch_size=8), read_weights(tmp_path / "p4.npz"))
    np.savez(tmp_path / "n12.npz", **official_arrays(tokens=12))
    with pytest.raises(PretrainedError, match="12 tokens is not a square patch grid"):
        load_pretrained(small_mixer(), read_weights(tmp_path / "n12.npz"))
    with pytest.raises(PretrainedError, match="unknown weights format '.h5'"):
        (tmp_path / "w.h5").write_bytes(b"x")
        read_weights(tmp_path / "w.h5")
    with pytest.raises(PretrainedError, match=r"need a mixer_\*, resmlp_\* or gmlp_\* model, not CifarResNet"):
        load_pretrained(create_model("resnet20"), read_weights(tmp_path / "p4.npz"))


def test_nearest_resize_of_token_mixing_is_exact_on_replicated_tokens():
    torch.manual_seed(0)
    small, large = MixerBlock(16, 8, 6, 12), MixerBlock(64, 8, 6, 12)
    for p in small.parameters():
        torch.nn.init.normal_(p, std=0.3)
    state = {f"blocks.0.{k}": v for k, v in small.state_dict().items()}
    resized = resize_token_mixing(state, (4, 4), (8, 8), mode="nearest")
    large.load_state_dict({k.removeprefix("blocks.0."): v for k, v in resized.items()})

    def upsample(tokens):  # (B, 16, C) on a 4x4 grid -> (B, 64, C) on an 8x8 grid, each token copied 2x2
        grid = tokens.reshape(-1, 4, 4, tokens.shape[-1])
        return grid.repeat_interleave(2, 1).repeat_interleave(2, 2).reshape(tokens.shape[0], 64, -1)

    x = torch.randn(3, 16, 8)
    with torch.no_grad():
        assert torch.allclose(large(upsample(x)), upsample(small(x)), atol=1e-5)
    assert resize_token_mixing(state, (4, 4), (4, 4)) == state


def test_new_head_and_new_resolution(tmp_path):
    np.savez(tmp_path / "p4.npz", **official_arrays())
    model = small_mixer(img_size=32, num_classes=3)
    head = model.head.weight.clone()
    report = load_pretrained(model, read_weights(tmp_path / "p4.npz"), new_head=True)
    assert report == {"resized": "4x4 -> 8x8 patches", "new_head": True}
    assert torch.equal(model.head.weight, head)
    assert model.blocks[0].token_mixing.fc1.weight.shape == (8, 64)
    with pytest.raises(PretrainedError, match=r"wrong shape: head.bias \(5,\) vs model \(3,\)"):
        load_pretrained(small_mixer(num_classes=3), read_weights(tmp_path / "p4.npz"))


def test_finetune_cli_trains_from_npz_on_cifar_batches(tmp_path, tiny_cifar, capsys):
    np.savez(tmp_path / "p4.npz", **official_arrays(tokens=64, hidden=16))
    code = main(["finetune", "--weights", str(tmp_path / "p4.npz"), "cifar10_mixer_1", f"data.path={tiny_cifar}",
                 "--model", "mixer_s16", "model.img_size=32", "model.patch_size=4", "model.hidden_dim=16",
                 "model.depth=2", "model.tokens_mlp_dim=8", "model.channels_mlp_dim=32", "data.batch_size=16",
                 "data.val_size=0", "train.max_steps=2", "train.max_epochs=0", "train.progress=false",
                 "--run-dir", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "new head" in out and "token mixing resized" not in out
    model, cfg, _ = load_run(tmp_path / "run")  # the run reloads as a plain mixer_s16 run
    assert cfg.model.name == "mixer_s16" and cfg.model.args["num_classes"] == 10 and cfg.model.args["depth"] == 2
    code = main(["finetune", "--weights", str(tmp_path / "p4.npz"), "cifar10_mixer_1", f"data.path={tiny_cifar}",
                 "data.val_size=0", "--run-dir", str(tmp_path / "run2")])
    assert code == 2 and "wrong shape" in capsys.readouterr().err


class _TouchOnUnpickle:
    """Unpickling this creates the marker file: proof that a loader ran code from a weights file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.mark.parametrize("kind", ["pth", "pth_plain_pickle", "npz_object_array", "npz_plain_pickle"])
def test_weights_files_run_no_code(tmp_path, kind):
    import pickle

    marker = tmp_path / "marker"
    payload = _TouchOnUnpickle(marker)
    path = tmp_path / f"weights.{kind[:3]}"
    if kind == "pth":
        torch.save({"head.weight": torch.zeros(2), "x": payload}, path)
    elif kind == "npz_object_array":
        np.savez(path, x=np.array([payload], dtype=object))
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(PretrainedError, match=rf"weights.{kind[:3]}: holds (pickled )?Python objects.*never loaded"):
        read_weights(path)
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncate", "bit_flip"])
def test_damaged_npz_is_one_line_naming_the_file(tmp_path, damage):
    path = tmp_path / "w.npz"
    np.savez(path, **{"stem/kernel": np.ones((4, 4, 3, 8), np.float32)})
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[:len(raw) // 2]
    else:
        raw[200] ^= 0xFF  # inside the array's bytes: the zip member's CRC no longer matches
    path.write_bytes(bytes(raw))
    with pytest.raises(PretrainedError, match=r"w.npz: not a readable .npz archive \([^\n]+\)$"):
        read_weights(path)
