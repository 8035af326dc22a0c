"""`allmlp report`: one self-contained HTML page of a run (or a comparison of runs), figures embedded as data URIs."""

from __future__ import annotations

import base64
import html
import tempfile
import time
from pathlib import Path

import yaml

from . import viz
from .checkpoint import load_run, read_metrics
from .models import count_parameters

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .5em 0; } td, th { border: 1px solid #ccc; padding: .25em .6em; }
th { background: #f3f3f3; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: .85em; }
figure { margin: 1em 0; } img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #666; font-size: .9em; } .muted { color: #888; }
"""

SKIPPED_KEYS = ("step", "split")


def final_metrics(records: list[dict]) -> dict[str, float]:
    """The last logged value of every metric per split, keyed `split/name` (e.g. `test/acc`)."""
    out: dict[str, float] = {}
    for record in records:
        split = record.get("split", "train")
        for key, value in record.items():
            if key not in SKIPPED_KEYS and isinstance(value, (int, float)):
                out[f"{split}/{key}"] = float(value)
    out["step"] = float(max((r.get("step", 0) for r in records), default=0))
    return dict(sorted(out.items(), key=lambda item: (not item[0].startswith(("test/", "val/")), item[0])))


def data_uri(png: str | Path) -> str:
    """A PNG file as a base64 data URI, so the page needs no files beside it."""
    return "data:image/png;base64," + base64.b64encode(Path(png).read_bytes()).decode("ascii")


def _figure_html(name: str, png: Path) -> str:
    caption = name.replace("_", " ")
    return (f'<figure><img alt="{html.escape(caption)}" src="{data_uri(png)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() and abs(value) >= 1 else f"{value:.4g}"
    return html.escape(str(value))


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f'<td class="num">{_format(v)}</td>' if isinstance(v, (int, float)) else f"<td>{_format(v)}</td>" for v in row)
        + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _page(title: str, sections: list[str]) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f'<p class="muted">written by allmlp report on {stamp}</p>' + "\n".join(sections) + "</body></html>\n")


def text_samples(model, tokenizer, count: int = 3, max_new_tokens: int = 300) -> list[str]:
    """`count` generated samples (seeds 0..count-1) from a language model, or one line saying why there are none."""
    prompt = viz.default_prompt(tokenizer)
    try:
        return [prompt + viz.sample_text(model, tokenizer, prompt, max_new_tokens, seed=seed) for seed in range(count)]
    except ImportError:
        return ["(no samples: allmlp.generate is not available in this installation)"]


def single_report(run_dir: str | Path, out: str | Path | None = None, samples: int = 3,
                  confusion: bool = True) -> Path:
    """One page for one run: config, parameter count, final metrics, every figure, generated samples."""
    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / "report.html"
    model, cfg, tokenizer = load_run(run_dir)
    metrics = final_metrics(read_metrics(run_dir))
    sections = [_table(["model", "parameters", "preset", "run folder"],
                       [[cfg.model.name, float(count_parameters(model)), cfg.preset or "-", str(run_dir)]])]
    sections.append("<h2>Final metrics</h2>" + (_table(["metric", "value"], [[k, v] for k, v in metrics.items()])
                                                 if len(metrics) > 1 else '<p class="muted">no metrics.jsonl</p>'))
    with tempfile.TemporaryDirectory() as tmp:
        figures = viz.figures_for_run(run_dir, tmp, confusion=confusion, log=lambda message: None)
        sections.append("<h2>Figures</h2>" + "".join(_figure_html(name, png) for name, png in figures.items()))
    if tokenizer is not None and hasattr(model, "lm_kind") and samples > 0:
        texts = text_samples(model, tokenizer, samples)
        sections.append("<h2>Generated samples</h2>" + "".join(f"<pre>{html.escape(t)}</pre>" for t in texts))
    config_text = yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True)
    sections.append(f"<h2>Config</h2><pre>{html.escape(config_text)}</pre>")
    out.write_text(_page(f"allmlp run: {run_dir.name}", sections), encoding="utf-8")
    return out


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def compare_report(run_dirs: list[str | Path], out: str | Path) -> Path:
    """One page comparing runs: metrics side by side, overlaid curves, and the config keys that differ."""
    runs, configs, curves = [], [], {}
    for run_dir in map(Path, run_dirs):
        model, cfg, _ = load_run(run_dir)
        records = read_metrics(run_dir)
        runs.append((str(run_dir), cfg.model.name, count_parameters(model), final_metrics(records)))
        configs.append(_flatten(cfg.to_dict()))
        curves[str(run_dir)] = records
    keys = sorted({k for *_, metrics in runs for k in metrics if k.split("/")[-1] in ("loss", "acc", "bpc", "ppl")},
                  key=lambda k: (not k.startswith(("test/", "val/")), k)) + ["step"]
    names = [name for name, *_ in runs]
    rows = [[name, model_name, float(params)] + [metrics.get(k, "-") for k in keys]
            for name, model_name, params, metrics in runs]
    sections = ["<h2>Final metrics</h2>" + _table(["run", "model", "parameters"] + keys, rows)]
    with tempfile.TemporaryDirectory() as tmp:
        if any(any("loss" in r for r in records) for records in curves.values()):
            png = viz.plot_curves(curves, Path(tmp) / "curves.png", title="training curves, overlaid")
            sections.append("<h2>Curves</h2>" + _figure_html("curves (colour: run; solid train, dashed val, "
                                                             "dotted test)", png))
    differing = sorted(k for k in set().union(*configs) if len({repr(c.get(k, "-")) for c in configs}) > 1)
    sections.append("<h2>Config differences</h2>" + (
        _table(["key"] + names, [[k] + [str(c.get(k, "-")) for c in configs] for k in differing])
        if differing else '<p class="muted">the configs are identical</p>'))
    out = Path(out)
    out.write_text(_page(f"allmlp: {len(names)} runs compared", sections), encoding="utf-8")
    return out


def main(argv: list[str]) -> int:
    """`allmlp report RUN [RUN ...] [--out FILE]`: a self-contained HTML report (or comparison of several runs)."""
    import argparse

    parser = argparse.ArgumentParser(prog="allmlp report", description=(
        "Write one self-contained HTML page (figures embedded, opens without network): for one run its config, "
        "parameters, metrics, figures and samples; for several runs a side-by-side comparison."))
    parser.add_argument("runs", nargs="+", help="run folders written by allmlp train")
    parser.add_argument("--out", help="HTML file (default: RUN/report.html for one run, report.html for several)")
    parser.add_argument("--samples", type=int, default=3, help="generated samples for language models (default 3)")
    parser.add_argument("--no-confusion", action="store_true", help="skip the confusion matrix (needs the test data)")
    args = parser.parse_args(argv)
    if len(args.runs) == 1:
        out = single_report(args.runs[0], args.out, samples=args.samples, confusion=not args.no_confusion)
    else:
        out = compare_report(args.runs, args.out or "report.html")
    print(f"report: {out}")
    return 0
