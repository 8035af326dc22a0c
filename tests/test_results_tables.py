"""The results tables in the README and docs/ are what benchmarks/tables.py renders from the committed results."""

from __future__ import annotations

import json
import re
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


def glance_rows() -> list[tuple[str, list[str]]]:
    """(result cell, results files it names) for each README results-at-a-glance row that names a file."""
    text = (ROOT / "README.md").read_text()
    table = text.split("## Results at a glance")[1].split("\n## ")[0]
    rows = []
    for line in table.splitlines():
        cells = line.split(" | ")
        if line.startswith("| ") and len(cells) >= 4 and not line.startswith(("| what |", "| --- |")):
            result = cells[2]
            rows.append((result, re.findall(r"`([\w.-]+)\.json`", result)))
    return rows


def numbers_in(value) -> list[float]:
    """Every number in a parsed JSON value, recursively."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in numbers_in(v)]
    if isinstance(value, list):
        return [n for v in value for n in numbers_in(v)]
    return []


def missing_decimals(result: str, files: list[str]) -> list[str]:
    """The decimals typed in a glance row's result cell that none of its results files holds."""
    texts = [(tables.RESULTS / f"{name}.json").read_text() for name in files]
    raw, values = "".join(texts), [n for text in texts for n in numbers_in(json.loads(text))]
    prose = re.sub(r"`[^`]*`", "", result)  # commands and file names are not results
    missing = []
    for typed in re.findall(r"(?<![\w.])\d[\d,]*\.\d+(?:e-?\d+)?", prose):
        mantissa, _, exponent = typed.partition("e")
        number = float(typed.replace(",", ""))
        # half a unit of the last digit typed: 1.5955 may be quoted as 1.596 or 1.595, 1.19e-07 as 1.2e-7
        half = 0.5 * 10 ** (int(exponent or 0) - len(mantissa.split(".")[1])) + 1e-12
        if typed not in raw and not any(abs(v * scale - number) <= half for v in values for scale in (1, 100)):
            missing.append(typed)
    return missing


def test_every_decimal_in_the_readme_glance_is_in_the_results_file_it_names():
    rows = glance_rows()
    assert len(rows) >= 10
    for result, files in rows:
        assert files, f"README glance: a row names no results file ({result[:60]}...)"
        assert not missing_decimals(result, files), f"README glance: {missing_decimals(result, files)} not in {files}"


def test_a_decimal_typed_by_hand_into_the_glance_is_caught():
    result, files = next((r, f) for r, f in glance_rows() if "names" in f)
    assert not missing_decimals(result, files)
    assert missing_decimals(result.replace("1.901", "1.861", 1), files) == ["1.861"]
