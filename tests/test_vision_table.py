"""benchmarks/fashion_mnist.py: every (model, recipe) cell of the vision table builds, so a long run cannot stop
at its fifth cell on a config error; the tiny models are the ~0.3M the table compares."""

import importlib.util
import sys
from pathlib import Path

import pytest

from allmlp.configure import build_config
from allmlp.models import count_parameters, create_model

BENCH = Path(__file__).parents[1] / "benchmarks" / "fashion_mnist.py"
sys.path.insert(0, str(BENCH.parent))  # the benchmark's own imports (benchmarks/ is not a package)
_spec = importlib.util.spec_from_file_location("fashion_bench", BENCH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


@pytest.mark.parametrize("recipe", sorted(bench.RECIPES))
@pytest.mark.parametrize("column", sorted(bench.MODELS))
def test_every_cell_builds(column, recipe):
    cfg = build_config("fashion_mixer", [*bench.MODELS[column], *bench.RECIPES[recipe]])
    model = create_model(cfg.model.name, **cfg.model.args)
    assert 250_000 < count_parameters(model) < 350_000  # all four are ~0.3M
    if recipe != "old":
        assert cfg.train.ema_decay > 0 and cfg.data.random_erasing > 0


def test_markdown_table_rows():
    row = {"column": "gmlp", "recipe": "new", "model": "gmlp_tiny_28", "params": 313042, "steps": 10,
           "val_accuracy_single_view": 0.9, "test_accuracy_single_view": 0.89, "test_accuracy": 0.9012}
    lines = bench.markdown_table([row]).splitlines()
    assert lines[2] == "| gmlp (gmlp_tiny_28) | new | 313,042 | 10 | 0.9000 | 0.8900 | 0.9012 |"
