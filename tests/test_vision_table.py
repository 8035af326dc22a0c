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


def test_the_table_renders_each_cell_and_bolds_the_choice_made_on_val():
    import tables

    rows = [{"column": column, "recipe": "new", "model": f"{column}_tiny_28", "params": 313042, "steps": 10,
             "precision": "bf16-mixed", "val_size": 5000, "val_accuracy_single_view": val,
             "test_accuracy_single_view": 0.89, "test_accuracy": 0.9012} for column, val in (("gmlp", 0.9), ("mixer", 0.8))]
    results = {"table": rows, "best_on_val": {"model": "gmlp", "recipe": "new"}, "budget_minutes": 10,
               "machine": {"cpu_model": "cpu", "torch_threads": 2, "torch_version": "2"}, "git_commit": "a" * 40,
               "date_utc": "2026-12-01T00:00:00Z", "note": ""}
    lines = tables.fashion_mnist_table(results).splitlines()
    assert lines[2] == "| gmlp (`gmlp_tiny_28`) | new | 313,042 | 10 | bf16-mixed | **0.9000** | 0.8900 | 0.9012 |"
    assert lines[3].startswith("| mixer (`mixer_tiny_28`) | new |") and "| 0.8000 |" in lines[3]
