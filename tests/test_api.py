"""allmlp.fit: a model built in Python trains through the same engine and run folder as `allmlp train`."""

import pytest
import torch

import allmlp
from allmlp.checkpoint import CheckpointError, load_run, load_weights
from allmlp.config import ConfigError
from allmlp.models.mixer import MLPMixer


def reference_mixer() -> MLPMixer:
    """The mlp_mixer project's constructor, small."""
    torch.manual_seed(0)
    return MLPMixer(img_shape=(1, 28, 28), patch_size=7, embedding_dim=32, n_layers=2, mlp_dim=64, clf_dim=32,
                    n_classes=10)


def test_fit_trains_a_python_model_into_a_run_folder(tiny_fashion, tmp_path):
    model = reference_mixer()
    result = allmlp.fit(model, "fashion_mixer", run_dir=tmp_path / "run", max_steps=80, data__path=str(tiny_fashion),
                        progress=False, eval_interval=0, augment=False, batch_size=64, warmup_steps=5)
    assert result["step"] == 80 and result["test/acc"] > 0.9
    fresh = reference_mixer()
    load_weights(fresh, tmp_path / "run" / "model.safetensors")
    x = torch.randn(3, 1, 28, 28)
    model.eval()
    assert torch.equal(fresh.eval()(x), model(x))
    assert "MLPMixer" in (tmp_path / "run" / "config.yaml").read_text()
    with pytest.raises(CheckpointError, match="built in Python"):
        load_run(tmp_path / "run")


def test_fit_names_an_option_it_cannot_place():
    with pytest.raises(ConfigError, match="'name' is in data, optim"):
        allmlp.fit(reference_mixer(), name="adamw")
    with pytest.raises(ConfigError, match="no config section"):
        allmlp.fit(reference_mixer(), max_stepz=3)
