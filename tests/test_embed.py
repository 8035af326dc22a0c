"""`allmlp embed`: pooled features of a split as .npy, equal to the model's own pre-logits; EMA weights; errors."""

import numpy as np
import torch

from allmlp.checkpoint import EMA_WEIGHTS, load_run, load_weights
from allmlp.cli import main
from allmlp.tasks.classification import load_splits


def train(folder, run_dir, *extra):
    code = main(["train", "fashion_mixer", f"data.path={folder}", "data.val_size=64", "data.batch_size=32",
                 "train.max_steps=3", "train.progress=false", "model.name=gmlp_tiny_28", "model.depth=2",
                 "model.hidden_dim=32", *extra, "--run-dir", str(run_dir)])
    assert code == 0


def test_embed_writes_the_pre_logits_of_a_split(tiny_fashion, tmp_path, capsys):
    train(tiny_fashion, tmp_path / "run", "train.ema_decay=0.5")
    out, labels = tmp_path / "feats" / "test.npy", tmp_path / "labels.npy"
    assert main(["embed", str(tmp_path / "run"), "--data", "test", "--out", str(out), "--labels", str(labels)]) == 0
    assert "test: 256 images x 32 features" in capsys.readouterr().out
    features = np.load(out)
    model, cfg, _ = load_run(tmp_path / "run")
    images, truth = load_splits(cfg)["test"]
    with torch.no_grad():
        expected = model.forward_head(model.forward_features(images), pre_logits=True)
    assert features.dtype == np.float32 and features.shape == (256, 32)
    assert np.allclose(features, expected.numpy(), atol=1e-5) and np.array_equal(np.load(labels), truth.numpy())
    assert main(["embed", str(tmp_path / "run"), "--data", "val", "--ema", "--out", str(tmp_path / "ema.npy")]) == 0
    load_weights(model, tmp_path / "run" / EMA_WEIGHTS)
    with torch.no_grad():
        ema_expected = model.forward_head(model.forward_features(load_splits(cfg)["val"][0]), pre_logits=True)
    assert np.allclose(np.load(tmp_path / "ema.npy"), ema_expected.numpy(), atol=1e-5)


def test_embed_errors_are_one_line(tiny_fashion, tmp_path, capsys):
    train(tiny_fashion, tmp_path / "run")
    assert main(["embed", str(tmp_path / "run"), "--ema", "--out", str(tmp_path / "f.npy")]) == 2
    assert "has no model_ema.safetensors: it was trained without train.ema_decay" in capsys.readouterr().err
    assert main(["embed", str(tmp_path / "run"), "--data", "dev", "--out", str(tmp_path / "f.npy")]) == 2
    assert "split 'dev' not available; choose one of train, test, val" in capsys.readouterr().err
    assert main(["embed", str(tmp_path / "nothing"), "--out", str(tmp_path / "f.npy")]) == 2
    assert "run folder not found" in capsys.readouterr().err
