"""The report page: parses, embeds every figure as a data URI, references nothing on the network, compares runs."""

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
import yaml

from allmlp import viz
from allmlp.checkpoint import save_run
from allmlp.cli import main
from allmlp.configure import build_config
from allmlp.data.text import CharTokenizer
from allmlp.models import create_model
from allmlp.report import final_metrics


class PageScan(HTMLParser):
    """Collects image sources, every URL-bearing attribute, table rows and tags of a page."""

    def __init__(self):
        super().__init__()
        self.images, self.references, self.rows, self.tags = [], [], 0, []
        self.tables_outside_scroll, self.last_class = 0, None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables_outside_scroll += self.tags[-1:] != ["div"] or self.last_class != "scroll"
        self.last_class = dict(attrs).get("class")
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        self.references += [v for k, v in attrs.items() if k in ("src", "href", "data", "poster") and v]
        self.rows += tag == "tr"


def scan(path) -> PageScan:
    page = PageScan()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


@pytest.fixture
def trained_run(tiny_fashion, tmp_path, tiny_run):
    return tiny_run(tmp_path, "fashion_mixer", f"data.path={tiny_fashion}", "train.max_steps=8",
                    "train.eval_interval=4", "train.log_interval=2")


def test_single_report_is_self_contained(trained_run):
    assert main(["report", str(trained_run)]) == 0
    page = scan(trained_run / "report.html")
    # curves, token mixing, patch projections, confusion matrix: all embedded, none a file or URL
    assert len(page.images) == 4
    assert all(src.startswith("data:image/png;base64,") and len(src) > 1000 for src in page.images)
    assert all(ref.startswith("data:") for ref in page.references)
    assert "script" not in page.tags and "link" not in page.tags
    text = (trained_run / "report.html").read_text()
    assert "test/acc" in text and "mixer_tiny_28" in text and "patch_size: 7" in text
    from allmlp.checkpoint import load_run
    from allmlp.models import count_parameters

    assert f"{count_parameters(load_run(trained_run)[0]):,}" in text


def test_compare_report_tables_and_overlaid_curves(trained_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(trained_run, other)
    cfg = yaml.safe_load((other / "config.yaml").read_text())
    cfg["optim"]["lr"] = 0.01
    (other / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "cmp.html"
    assert main(["report", str(trained_run), str(other), "--out", str(out)]) == 0
    page = scan(out)
    assert len(page.images) == 1 and page.images[0].startswith("data:image/png;base64,")
    assert page.rows == 3 + 3 + 2  # run/folder, metrics (header + 2 runs), differences (header + optim.lr)
    assert "optim.lr" in out.read_text()


def test_text_run_report_has_samples_and_text_figures(tmp_path, tiny_run):
    text_file = tmp_path / "tiny.txt"
    text_file.write_text("The cat sat on the mat. " * 60)
    run_dir = tiny_run(tmp_path, "shakespeare_mixer", "data.name=text", f"data.path={text_file}", "train.max_steps=4",
                       "train.log_interval=2")
    assert main(["report", str(run_dir), "--samples", "2"]) == 0
    page = scan(run_dir / "report.html")
    assert len(page.images) == 3  # curves, causal token-mixing matrices, character embeddings
    text = (run_dir / "report.html").read_text()
    assert "Generated samples" in text and text.count("<pre>The ") == 2 and "val/bpc" in text


def test_report_of_missing_run_is_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "run folder not found" in capsys.readouterr().err


def test_final_metrics_keep_last_value_per_split():
    records = [{"step": 1, "split": "train", "loss": 3.0}, {"step": 2, "split": "train", "loss": 2.0},
               {"step": 2, "split": "test", "loss": 2.5, "acc": 0.5}]
    assert final_metrics(records) == {"test/acc": 0.5, "test/loss": 2.5, "step": 2.0, "train/loss": 2.0}


def fake_image_run(folder: Path, depth: int, steps: int, accuracy: float, batch_size: int = 32) -> Path:
    """A run folder as training leaves it (weights, config, metrics.jsonl), of a tiny untrained Mixer, written fast."""
    cfg = build_config({"model": {"name": "mixer_tiny_28", "depth": depth, "hidden_dim": 8, "tokens_mlp_dim": 4,
                                  "channels_mlp_dim": 8, "patch_size": 7},
                        "data": {"batch_size": batch_size}, "train": {"max_steps": steps}})
    torch.manual_seed(depth)
    save_run(folder, create_model(cfg.model.name, **cfg.model.args), cfg)
    records = [{"step": s, "split": "train", "loss": 2.3 / (1 + s / 200), "lr": 1e-3,
                "samples_per_sec": 800.0 + 100 * depth} for s in range(50, steps + 1, 50)]
    records.append({"step": steps, "split": "val", "loss": 0.5, "acc": accuracy})
    records.append({"step": steps, "split": "test", "loss": 0.55, "acc": accuracy - 0.01})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


@pytest.fixture
def five_runs(tmp_path) -> list[Path]:
    """Five runs of 1..5 blocks trained for 321 to 8,718 steps (the comparison the report must keep readable)."""
    return [fake_image_run(tmp_path / f"mixer_blocks_{depth}_with_a_long_descriptive_name", depth, steps, accuracy)
            for depth, steps, accuracy in zip(range(1, 6), (321, 900, 2000, 5000, 8718), (.61, .68, .71, .70, .69))]


def test_page_wraps_text_and_scrolls_wide_tables_in_their_own_box(five_runs, tmp_path):
    out = tmp_path / "cmp.html"
    assert main(["report", *map(str, five_runs), "--out", str(out)]) == 0
    page, text = scan(out), out.read_text()
    assert page.tables_outside_scroll == 0 and text.count('<div class="scroll"><table>') == 3
    assert re.search(r"\.scroll \{[^}]*overflow-x: auto", text)
    assert re.search(r"pre \{[^}]*white-space: pre-wrap[^}]*overflow-wrap: anywhere", text)
    assert re.search(r"img \{[^}]*max-width: 100%", text)


def test_config_lists_only_the_keys_of_the_runs_task(tmp_path, five_runs):
    text_file = tmp_path / "tiny.txt"
    text_file.write_text("The cat sat on the mat. " * 20)
    tokenizer = CharTokenizer(text_file.read_text())
    cfg = build_config({"model": {"name": "causal_mixer", "vocab_size": tokenizer.vocab_size, "context_length": 8,
                                  "embedding_dim": 8, "depth": 1, "channels_mlp_dim": 8, "num_heads": 1},
                        "data": {"name": "text", "path": str(text_file)}})
    save_run(tmp_path / "text_run", create_model(cfg.model.name, **cfg.model.args), cfg, tokenizer)
    assert main(["report", str(tmp_path / "text_run"), "--samples", "1"]) == 0
    config = (tmp_path / "text_run" / "report.html").read_text().split("<h2>Config</h2>")[1]
    assert "context_length: 8" in config and "unknown_chars" in config
    assert not any(f"  {key}:" in config for key in ("augment", "crop_padding", "hflip", "eval_hflip", "val_size"))
    assert main(["report", str(five_runs[0]), "--no-confusion"]) == 0
    config = (five_runs[0] / "report.html").read_text().split("<h2>Config</h2>")[1]
    assert "  hflip:" in config and "train_fraction" not in config and "unknown_chars" not in config


@pytest.mark.parametrize("x", ["samples", "time"])
def test_curves_against_samples_or_time_from_the_command_line(five_runs, tmp_path, x, capsys):
    assert main(["report", *map(str, five_runs[:2]), "--x", x, "--out", str(tmp_path / "cmp.html")]) == 0
    assert main(["report", str(five_runs[0]), "--x", x, "--no-confusion"]) == 0
    records = [json.loads(line) for line in (five_runs[1] / "metrics.jsonl").read_text().splitlines()]
    (five_runs[1] / "metrics.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items()
                                                                   if k != "samples_per_sec"}) + "\n"
                                                        for r in records))
    capsys.readouterr()
    assert main(["report", str(five_runs[1]), "--x", x, "--no-confusion"]) == (2 if x == "time" else 0)
    err = capsys.readouterr().err
    assert err == ("" if x == "samples" else "allmlp report: error: --x time: metrics.jsonl has no train records "
                   "with samples_per_sec to rebuild the clock from\n")


def test_vs_draws_the_final_metric_against_a_config_key(five_runs, tmp_path, capsys, monkeypatch):
    drawn, real_figure = [], viz.metric_vs_key_figure
    monkeypatch.setattr(viz.plots, "metric_vs_key_figure", lambda points, key, metric: drawn.append(
        real_figure(points, key, metric)) or drawn[-1])
    out = tmp_path / "blocks.html"
    assert main(["report", *map(str, five_runs), "--vs", "model.depth", "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"figure: {tmp_path / 'blocks_vs_model.depth.png'}"
    assert (tmp_path / "blocks_vs_model.depth.png").stat().st_size > 1000
    ax = drawn[-1].axes[0]
    assert ax.get_xlabel() == "model.depth" and ax.get_ylabel() == "final val/acc"
    assert ax.collections[0].get_offsets().tolist() == [[1, .61], [2, .68], [3, .71], [4, .70], [5, .69]]
    table = out.read_text().split("against model.depth</h2>")[1].split("</table>")[0]
    assert re.findall(r'<td class="num">([0-9.]+)</td><td class="num">([0-9.]+)</td>', table) == [
        ("1", "0.61"), ("2", "0.68"), ("3", "0.71"), ("4", "0.7"), ("5", "0.69")]
    assert main(["report", *map(str, five_runs[:2]), "--vs", "model.depth", "--metric", "test/acc",
                 "--out", str(out)]) == 0
    assert drawn[-1].axes[0].collections[0].get_offsets().flatten().tolist() == pytest.approx([1, .60, 2, .67])


@pytest.mark.parametrize("words, message", [
    (["--vs", "model.blocks"], "--vs model.blocks: {run}/config.yaml has no key 'model.blocks'"),
    (["--vs", "model.depth", "--metric", "val/bpc"], "--metric val/bpc: {run} never logged it"),
    (["--metric", "val/acc"], "--metric goes with --vs KEY")])
def test_vs_errors_are_one_line(five_runs, tmp_path, capsys, words, message):
    assert main(["report", *map(str, five_runs[:2]), *words, "--out", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and message.format(run=five_runs[0]) in err
