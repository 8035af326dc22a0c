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


def test_eval_of_the_averaged_weights_and_of_another_image_size(tiny_fashion, tmp_path, capsys):
    import json

    from allmlp.tasks.classification import classification_metrics, predict

    run = tmp_path / "run"
    train(tiny_fashion, run, "train.ema_decay=0.5", "model.name=mixer_tiny_28", "model.patch_size=7")
    assert main(["eval", str(run), "--ema", "--img-size", "56"]) == 0
    result = json.loads((run / "eval_ema_56px.json").read_text())
    assert result["weights"] == "ema" and result["img_size"] == 56 and (run / "confusion_test_ema_56px.png").is_file()
    model, cfg, _ = load_run(run, ema=True)
    images, labels = load_splits(cfg)["test"]
    expected = classification_metrics(predict(model, images, 64, cfg.data.eval_hflip, 56), labels)
    assert result["test/acc"] == expected["acc"] and abs(result["test/loss"] - expected["loss"]) < 1e-6
    raw, _, _ = load_run(run)
    assert not torch.equal(raw.head.weight, model.head.weight)  # the two files differ, and eval read the EMA one
    assert main(["eval", str(run), "--img-size", "30"]) == 2  # 30 px is not a multiple of the 7 px patches
    assert "evaluates images whose height is a multiple of 7" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "run"), "--img-size", "56", "--ema"]) == 0 and not (run / "eval.json").exists()
