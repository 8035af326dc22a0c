"""One self-contained HTML page of a run (or a comparison of runs), figures embedded as data URIs (`allmlp report`)."""

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

# Nothing may be wider than the window: text wraps (samples, long names), wide tables scroll inside their own box.
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222;
       overflow-wrap: anywhere; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.6em; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: .5em 0; } td, th { border: 1px solid #ccc; padding: .25em .6em; }
th { background: #f3f3f3; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.scroll td, .scroll th { overflow-wrap: normal; white-space: nowrap; }
pre { background: #f7f7f7; padding: .8em; font-size: .85em; white-space: pre-wrap; overflow-wrap: anywhere; }
figure { margin: 1em 0; } img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #666; font-size: .9em; } .muted { color: #888; }
"""

# Data keys that only mean something for one kind of task; a run's page hides the other kind's.
IMAGE_DATA_KEYS = ("augment", "crop_padding", "hflip", "eval_hflip", "val_size")
TEXT_DATA_KEYS = ("context_length", "train_fraction", "val_fraction", "unknown_chars", "val_lines", "test_lines",
                  "tokenizer", "prepared", "eval_targets", "type", "repeats", "max_chars")

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
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'


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


def task_config(cfg) -> dict:
    """The run's config as saved, less the data keys that do not apply to its task (image keys for text runs...)."""
    from .models import model_info

    tree = cfg.to_dict()
    hidden = TEXT_DATA_KEYS if model_info(cfg.model.name)["task"] == "image" else IMAGE_DATA_KEYS
    tree["data"] = {k: v for k, v in tree.get("data", {}).items() if k not in hidden}
    return tree


def single_report(run_dir: str | Path, out: str | Path | None = None, samples: int = 3,
                  confusion: bool = True, x: str = "step") -> Path:
    """One page for one run: config, parameter count, final metrics, every figure (curves against `x`), samples."""
    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / "report.html"
    model, cfg, tokenizer = load_run(run_dir)
    metrics = final_metrics(read_metrics(run_dir))
    sections = [_table(["model", "parameters", "preset", "run folder"],
                       [[cfg.model.name, float(count_parameters(model)), cfg.preset or "-", str(run_dir)]])]
    sections.append("<h2>Final metrics</h2>" + (_table(["metric", "value"], [[k, v] for k, v in metrics.items()])
                                                 if len(metrics) > 1 else '<p class="muted">no metrics.jsonl</p>'))
    with tempfile.TemporaryDirectory() as tmp:
        figures = viz.figures_for_run(run_dir, tmp, confusion=confusion, log=lambda message: None, x=x)
        sections.append("<h2>Figures</h2>" + "".join(_figure_html(name, png) for name, png in figures.items()))
    if tokenizer is not None and hasattr(model, "lm_kind") and samples > 0:
        texts = text_samples(model, tokenizer, samples)
        sections.append("<h2>Generated samples</h2>" + "".join(f"<pre>{html.escape(t)}</pre>" for t in texts))
    config_text = yaml.safe_dump(task_config(cfg), sort_keys=False, allow_unicode=True)
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


def short_names(run_dirs: list[Path]) -> list[str]:
    """Each run's folder name, with as many parent folders as it takes to tell them apart."""
    for depth in range(1, max(len(p.parts) for p in run_dirs) + 1):
        names = ["/".join(p.parts[-depth:]) for p in run_dirs]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in run_dirs]


def default_metric(tasks: list[str], metrics: list[dict]) -> str:
    """The metric a --vs figure shows when none is named: val (else test) accuracy for images, val loss for text."""
    wanted = ("val/acc", "test/acc") if all(t == "image" for t in tasks) else ("val/loss", "test/loss")
    for name in wanted + ("val/loss", "test/loss", "train/loss"):
        if all(name in m for m in metrics):
            return name
    raise ValueError(f"--vs: the runs share none of {', '.join(wanted)}; name one with --metric")


def metric_vs_key(runs: list[dict], key: str, metric: str) -> list[tuple[str, object, float]]:
    """(run, value of config `key`, final `metric`) per run, or a one-line error naming what a run lacks."""
    points = []
    for run in runs:
        if key not in run["config"]:
            raise ValueError(f"--vs {key}: {run['path']}/config.yaml has no key {key!r} (dotted, e.g. model.depth)")
        if metric not in run["metrics"]:
            have = ", ".join(k for k in run["metrics"] if "/" in k) or "none"
            raise ValueError(f"--metric {metric}: {run['path']} never logged it (it has: {have})")
        points.append((run["name"], run["config"][key], run["metrics"][metric]))
    return points


def compare_report(run_dirs: list[str | Path], out: str | Path, x: str = "step", vs: str | None = None,
                   metric: str | None = None) -> Path:
    """One page comparing runs: metrics side by side, overlaid curves (against `x`), the config keys that differ,
    and with `vs` the final `metric` against that config key (also written as a PNG beside the page)."""
    from .models import model_info

    paths = [Path(p) for p in run_dirs]
    runs = []
    for path, name in zip(paths, short_names(paths)):
        model, cfg, _ = load_run(path)
        records = read_metrics(path)
        runs.append({"path": str(path), "name": name, "model": cfg.model.name, "params": count_parameters(model),
                     "metrics": final_metrics(records), "config": _flatten(cfg.to_dict()), "records": records,
                     "task": model_info(cfg.model.name)["task"], "step_samples": viz.samples_per_step(cfg, model)})
    out = Path(out)
    keys = sorted({k for run in runs for k in run["metrics"] if k.split("/")[-1] in ("loss", "acc", "bpc", "ppl")},
                  key=lambda k: (not k.startswith(("test/", "val/")), k)) + ["step"]
    names = [run["name"] for run in runs]
    rows = [[run["name"], run["model"], float(run["params"])] + [run["metrics"].get(k, "-") for k in keys]
            for run in runs]
    sections = []
    if names != [run["path"] for run in runs]:
        sections.append(_table(["run", "folder"], [[run["name"], run["path"]] for run in runs]))
    sections.append("<h2>Final metrics</h2>" + _table(["run", "model", "parameters"] + keys, rows))
    with tempfile.TemporaryDirectory() as tmp:
        if vs:
            metric = metric or default_metric([run["task"] for run in runs], [run["metrics"] for run in runs])
            points = metric_vs_key(runs, vs, metric)
            png = viz.plot_metric_vs_key(points, vs, metric, out.with_name(f"{out.stem}_vs_{vs}.png"))
            sections.append(f"<h2>{html.escape(metric)} against {html.escape(vs)}</h2>" + _figure_html(
                f"final {metric} of each run against its {vs}", png) + _table(["run", vs, metric], [
                    [name, value if isinstance(value, (int, float)) else str(value), result]
                    for name, value, result in points]))
        if any(any("loss" in r for r in run["records"]) for run in runs):
            png = viz.plot_curves({run["name"]: run["records"] for run in runs}, Path(tmp) / "curves.png",
                                  title="training curves, overlaid", x=x,
                                  step_samples={run["name"]: run["step_samples"] for run in runs})
            sections.append("<h2>Curves</h2>" + _figure_html("curves (colour: run; solid train, dashed val, "
                                                             "test: one point, at the end of the run)", png))
    configs = [run["config"] for run in runs]
    differing = sorted(k for k in set().union(*configs) if len({repr(c.get(k, "-")) for c in configs}) > 1)
    sections.append("<h2>Config differences</h2>" + (
        _table(["key"] + names, [[k] + [str(c.get(k, "-")) for c in configs] for k in differing])
        if differing else '<p class="muted">the configs are identical</p>'))
    out.write_text(_page(f"allmlp: {len(names)} runs compared", sections), encoding="utf-8")
    return out
