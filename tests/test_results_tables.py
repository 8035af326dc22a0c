"""The results tables in the README and docs/ are what benchmarks/tables.py renders from the committed results."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import tables  # noqa: E402  (benchmarks/ is not a package)


def marked_tables() -> list[tuple[Path, str, str]]:
    """(file, results name, the table written there) for every marked table we ship."""
    return [(path, m.group("name"), m.group("body")) for path in tables.markdown_files()
            for m in tables.MARKED.finditer(path.read_text())]


def test_the_shipped_pages_mark_the_tables_of_the_main_benchmarks():
    names = {name for _, name, _ in marked_tables()}
    assert {"names", "generate", "fashion_mnist"} <= names and any(name.startswith("precision_") for name in names)


def test_every_marked_table_is_its_results_file_rendered():
    for path, name, body in marked_tables():
        assert (tables.RESULTS / f"{tables.results_file(name)}.json").is_file(), f"{path.name}: no results file for {name}"
        assert body == tables.render(name) + "\n", (f"{path.name}: the {name} table is not what its results file "
                                                   "renders; run python benchmarks/tables.py --write")


def test_a_number_typed_by_hand_is_put_back(tmp_path):
    path, name, body = marked_tables()[0]
    typed = body.replace(body.split("|")[-3], " 0.9999 ", 1)
    text = f"before\n<!-- results: {name} -->\n{typed}<!-- /results -->\nafter\n"
    expected = f"before\n<!-- results: {name} -->\n{body}<!-- /results -->\nafter\n"
    assert typed != body and tables.refreshed(text) == expected


def test_names_verdict_needs_the_gap_to_exceed_the_spread():
    def model(mean, std, deterministic=False):
        run = {"steps": 10, "precision": "32-true"}
        return {"val_loss": {"mean": mean, "std": std, "values": [mean] * (1 if deterministic else 3)},
                "test_loss": {"mean": mean, "std": std, "values": [mean]}, "params": 1,
                "deterministic": deterministic, "runs": {"0": run}}

    results = {"models": {"ngram5": model(2.00, 0.0, True), "wide": model(1.99, 0.02), "clear": model(1.90, 0.01)},
               "names": {"stand_in": True, "sha256": "0" * 64}, "budget_minutes": 5, "seeds": [0, 1, 2],
               "machine": {"cpu_model": "cpu", "torch_threads": 2, "torch_version": "2"}, "git_commit": "a" * 40,
               "date_utc": "2026-12-01T00:00:00Z", "note": ""}
    table = tables.names_table(results)
    assert "| `clear` |" in table and "better by 0.100 (spread 0.010)" in table
    assert "not better (+0.010, spread 0.020)" in table and "**stand-in**" in table


def test_make_bench_reruns_the_script_of_every_committed_results_file():
    makefile = (ROOT / "Makefile").read_text()
    listed = makefile.split("BENCHMARKS ?=")[1].split("\nbench:")[0].replace("\\", " ").split()
    for path in sorted(tables.RESULTS.glob("*.json")):
        script = next((name for name in listed if path.stem == name or path.stem.startswith(f"{name}_")), None)
        assert script, f"{path.name}: no benchmark in make bench writes it"
        assert (ROOT / "benchmarks" / f"{script}.py").is_file()
