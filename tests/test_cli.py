import json
import subprocess
import sys

import pytest

from allmlp.cli import main


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "allmlp", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_models_table_lists_pinned_counts(capsys):
    assert main(["models", "--task", "image"]) == 0
    out = capsys.readouterr().out
    assert "mixer_b16" in out and "59,880,472" in out and "mlp_mixer_seed" in out


def test_version_and_usage_list_every_command(capsys):
    import allmlp
    from allmlp.cli import COMMANDS

    assert main(["--version"]) == 0 and capsys.readouterr().out == f"allmlp {allmlp.__version__}\n"
    assert main([]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert listed == list(COMMANDS)


def test_unknown_command_and_preset_are_one_line_errors(capsys):
    assert main(["trian"]) == 2
    assert "did you mean 'train'" in capsys.readouterr().err
    assert main(["train", "fashion_mixr"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["allmlp train: error: unknown preset 'fashion_mixr'; did you mean fashion_mixer, fashion_gmlp?"]


def test_bad_override_is_one_line_error(capsys):
    assert main(["train", "fashion_mixer", "optim.lrr=0.1"]) == 2
    assert "unknown config key 'optim.lrr'; did you mean lr?" in capsys.readouterr().err


def test_eval_of_missing_run_folder(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope")]) == 2
    assert "run folder not found" in capsys.readouterr().err


def test_train_then_eval_through_the_cli(tiny_fashion, tmp_path):
    run_dir = tmp_path / "run"
    args = ["train", "fashion_mixer", f"data.path={tiny_fashion}", "train.max_steps=120", "data.batch_size=64",
            "model.hidden_dim=32", "model.depth=2", "model.patch_size=7", "model.tokens_mlp_dim=16",
            "model.channels_mlp_dim=64", "train.eval_interval=60", "data.augment=false"]
    # options may come before, between or after the overrides
    args = [*args, "--run-dir", str(run_dir), "optim.warmup_steps=5"]
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "saved:" in done.stdout
    for name in ("model.safetensors", "config.yaml", "metrics.jsonl", "trainer_state.safetensors"):
        assert (run_dir / name).is_file(), name
    evaluated = run_cli("eval", str(run_dir), cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["test/acc"] > 0.9 and (run_dir / "confusion_test.png").stat().st_size > 1000
    # a second run of the same preset without --run-dir never overwrites the first
    again = run_cli(*args[:-3], "train.max_steps=2", cwd=tmp_path)
    assert again.returncode == 0 and "runs/fashion_mixer" in again.stdout


@pytest.mark.parametrize("command", ["train", "eval", "data", "models"])
def test_help_of_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0 and "usage: allmlp" in capsys.readouterr().out
