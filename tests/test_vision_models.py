import pytest
import torch

from allmlp.models import count_parameters, create_model, list_models, model_info
from allmlp.models.mixer import PAPER_VARIANTS, MLPMixer, MlpMixer


def mixer_formula(patch, hidden, depth, tokens_dim, channels_dim, img=224, in_chans=3, classes=1000):
    """Parameter count of a Mixer written out by hand (independent of the module code)."""
    n = (img // patch) ** 2
    stem = in_chans * patch * patch * hidden + hidden
    block = 4 * hidden + (n * tokens_dim + tokens_dim + tokens_dim * n + n) \
        + (hidden * channels_dim + channels_dim + channels_dim * hidden + hidden)
    return stem + depth * block + 2 * hidden + hidden * classes + classes


OFFICIAL = {  # 1000 classes, 224 px
    "mixer_s32": 19_104_624, "mixer_s16": 18_528_264, "mixer_b32": 60_293_428, "mixer_b16": 59_880_472,
    "mixer_l32": 206_939_264, "mixer_l16": 208_196_168, "mixer_h14": 432_350_952,
}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_paper_parameter_counts(name):
    with torch.device("meta"):
        model = create_model(name)
    assert count_parameters(model) == OFFICIAL[name] == mixer_formula(*PAPER_VARIANTS[name])


def test_b16_matches_published_count():
    assert OFFICIAL["mixer_b16"] == 59_880_472


def test_reference_constructor_parameter_count():
    model = MLPMixer(img_shape=(1, 28, 28), patch_size=7, embedding_dim=128, n_layers=3, mlp_dim=64,
                     clf_dim=512, n_classes=10)
    # conv 1*7*7*128+128; per block 2 LN(16) + MLP(128->64->128) + MLP(16->64->16); classifier 2048->512->512->10
    block = 2 * 32 + (128 * 64 + 64 + 64 * 128 + 128) + (16 * 64 + 64 + 64 * 16 + 16)
    expected = 6400 + 3 * block + (2048 * 512 + 512) + (512 * 512 + 512) + (512 * 10 + 10)
    assert count_parameters(model) == expected == 1_379_578


def test_reference_block_normalises_over_patches():
    model = MLPMixer()
    block = model.mixers[0]
    assert block.ln1.normalized_shape == (16,) and block.mlp2.fc1.in_features == 16
    assert block.mlp1.fc1.in_features == 128


@pytest.mark.parametrize("name", list_models("image"))
def test_forward_shape_every_image_model(name):
    info = model_info(name)
    if name in PAPER_VARIANTS:  # shrink to a 2x2 patch grid and one block, same structure
        size = 2 * PAPER_VARIANTS[name][0]
        model = create_model(name, img_size=size, num_classes=7, depth=1)
        x = torch.randn(2, 3, size, size)
    else:
        model = create_model(name)
        x = torch.randn(2, *info["input_size"])
    out = model(x)
    assert out.shape[0] == 2 and out.ndim == 2 and torch.isfinite(out).all()


def test_forward_features_and_head_split():
    model = MlpMixer(num_classes=5, img_size=32, in_chans=3, patch_size=8, hidden_dim=16, depth=2,
                     tokens_mlp_dim=8, channels_mlp_dim=32)
    x = torch.randn(3, 3, 32, 32)
    features = model.forward_features(x)
    assert features.shape == (3, 16, 16)
    assert torch.allclose(model.forward_head(features), model(x))
    assert model.forward_head(features, pre_logits=True).shape == (3, 16)


def test_indivisible_image_size_is_an_error():
    with pytest.raises(ValueError, match="not divisible by patch_size=16"):
        MlpMixer(img_size=100, patch_size=16)


def test_wrong_channel_count_is_an_error():
    model = create_model("mixer_tiny_28")
    with pytest.raises(ValueError, match=r"expects images of shape \(B, 1, 28, 28\), got \(2, 3, 28, 28\)"):
        model(torch.randn(2, 3, 28, 28))


def test_unknown_model_suggests_close_names():
    with pytest.raises(KeyError, match="did you mean mixer_b16"):
        create_model("mixer_b61")
