"""allmlp export: onnx, torchscript and torch.export files give the checkpoint's logits."""

import pytest
import torch

from allmlp.checkpoint import load_run
from allmlp.cli import main
from allmlp.configure import build_config
from allmlp.export import ExportError, check_export, example_input, export_model, run_exported
from allmlp.models import create_model, list_models

@pytest.fixture
def trained(tmp_path, tiny_fashion, tiny_run):
    return tiny_run(tmp_path, "fashion_mixer", f"data.path={tiny_fashion}", "model.depth=1")


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "pt2"])
def test_export_round_trip_gives_checkpoint_logits(trained, tmp_path, capsys, fmt):
    out = tmp_path / f"exported.{fmt}"
    assert main(["export", str(trained), "--format", fmt, "--out", str(out)]) == 0
    assert "max |logit difference|" in capsys.readouterr().out and out.is_file()
    model, _, _ = load_run(trained)
    images = torch.randn(5, 1, 28, 28)  # a batch size the exporter never saw
    with torch.no_grad():
        expected = model(images)
    assert torch.allclose(run_exported(out, fmt, images), expected, atol=1e-5)


def test_onnx_reference_evaluator_agrees(trained, tmp_path):
    from onnx.reference import ReferenceEvaluator

    model, _, _ = load_run(trained)
    out = export_model(model, torch.randn(2, 1, 28, 28), "onnx", tmp_path / "m.onnx")
    images = torch.randn(3, 1, 28, 28)
    evaluator = ReferenceEvaluator(str(out))
    got = torch.from_numpy(evaluator.run(None, {evaluator.input_names[0]: images.numpy()})[0])
    with torch.no_grad():
        assert torch.allclose(got, model(images), atol=1e-5)


def test_a_wrong_export_is_caught(trained, tmp_path):
    model, _, _ = load_run(trained)
    out = export_model(model, torch.randn(2, 1, 28, 28), "torchscript", tmp_path / "m.pt")
    with torch.no_grad():
        model.head.bias.add_(1.0)  # the checkpoint moved on: the file no longer matches it
    with pytest.raises(ExportError, match="differ from the checkpoint's by 1"):
        check_export(model, out, "torchscript", torch.randn(3, 1, 28, 28))
    with pytest.raises(ExportError, match="unknown format 'tflite'"):
        export_model(model, torch.randn(2, 1, 28, 28), "tflite", tmp_path / "m.tflite")


@pytest.mark.skipif("causal_mixer" not in list_models(), reason="needs the causal Mixer LM")
def test_text_model_exports_with_token_inputs(tmp_path):
    cfg = build_config({"model": {"name": "causal_mixer", "vocab_size": 20, "context_length": 16}})
    model = create_model("causal_mixer", **cfg.model.args).eval()
    example = example_input(model, cfg)
    assert example.dtype == torch.long and example.shape == (2, 16) and int(example.max()) < 20
    out = export_model(model, example, "torchscript", tmp_path / "lm.pt")
    assert check_export(model, out, "torchscript", example_input(model, cfg, 3)) < 1e-6
    with pytest.raises(ExportError, match="must end in .pt2"):
        export_model(model, example, "pt2", tmp_path / "lm.pt")
