"""The report page: parses, embeds every figure as a data URI, references nothing on the network, compares runs."""

import shutil
from html.parser import HTMLParser

import pytest
import yaml

from allmlp.cli import main
from allmlp.report import final_metrics


class PageScan(HTMLParser):
    """Collects image sources, every URL-bearing attribute, table rows and tags of a page."""

    def __init__(self):
        super().__init__()
        self.images, self.references, self.rows, self.tags = [], [], 0, []

    def handle_starttag(self, tag, attrs):
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
def trained_run(tiny_fashion, tmp_path):
    run_dir = tmp_path / "run"
    assert main(["train", "--run-dir", str(run_dir), "fashion_mixer", f"data.path={tiny_fashion}",
                 "train.max_steps=8", "train.eval_interval=4", "train.log_interval=2", "train.checkpoint_interval=0",
                 "train.progress=false", "data.batch_size=32", "model.depth=2", "model.hidden_dim=16",
                 "model.tokens_mlp_dim=8", "model.channels_mlp_dim=16", "model.patch_size=7"]) == 0
    return run_dir


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
    assert page.rows == 1 + 2 + 1 + 1  # metrics header + 2 runs, differences header + optim.lr
    assert "optim.lr" in out.read_text()


def test_text_run_report_has_samples_and_text_figures(tmp_path):
    text_file = tmp_path / "tiny.txt"
    text_file.write_text("The cat sat on the mat. " * 60)
    run_dir = tmp_path / "run"
    assert main(["train", "--run-dir", str(run_dir), "shakespeare_mixer", "data.name=text", f"data.path={text_file}",
                 "model.context_length=8", "model.embedding_dim=8", "model.depth=2", "model.channels_mlp_dim=8",
                 "model.num_heads=2", "data.context_length=8", "data.batch_size=8", "train.max_steps=4",
                 "train.eval_interval=0", "train.checkpoint_interval=0", "train.log_interval=2",
                 "train.progress=false", "optim.warmup_steps=1"]) == 0
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
