"""Figures from tiny models: PNG sizes, one panel per layer, causal matrices stay triangular, TensorBoard tags."""

import struct

import pytest
import torch
import torch.nn as nn

from allmlp import viz
from allmlp.data.text import CharTokenizer
from allmlp.models import create_model


def png_size(path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    data = open(path, "rb").read(24)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


class StandInLM(nn.Module):
    """A tiny causal LM with the text inspection hooks: embeddings, one causal T x T mixing per layer, a head."""

    lm_kind = "causal"

    def __init__(self, vocab_size: int = 6, context_length: int = 8, dim: int = 4, layers: int = 3):
        super().__init__()
        self.context_length = context_length
        self.embed = nn.Embedding(vocab_size, dim)
        self.mixing = nn.Parameter(torch.randn(layers, context_length, context_length))
        self.head = nn.Linear(dim, vocab_size)
        self.links = StandInLinks()

    def token_mixing_matrices(self) -> list[torch.Tensor]:
        mask = torch.ones(self.context_length, self.context_length).tril()
        return [m * mask for m in self.mixing]

    def char_embeddings(self) -> torch.Tensor:
        return self.embed.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.embed(idx)  # (B, T, D)
        t = idx.shape[1]
        for matrix in self.token_mixing_matrices():
            x = x + matrix[:t, :t] @ x
        return self.head(x)  # (B, T, V)


class StandInLinks(nn.Module):
    """A piecewise layer stand-in: 2 outputs x 3 inputs, 3 segments on [-1, 1]."""

    segment_edges = torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0])

    def link_functions(self, points: int = 100):
        x = torch.linspace(-1, 1, points)
        y = torch.stack([torch.stack([torch.sin((o + 1) * x + i) for i in range(3)]) for o in range(2)])
        return x, y  # (P,), (2, 3, P)


def tokenizer():
    return CharTokenizer("\n abcT")  # sorted: \n, space, T, a, b, c


def tiny_mixer(depth=3, **kw):
    return create_model("mixer_tiny_28", depth=depth, hidden_dim=16, tokens_mlp_dim=12, channels_mlp_dim=24, **kw)


def test_vision_token_mixing_one_panel_per_layer(tmp_path):
    units = viz.vision_token_mixing_units(tiny_mixer(depth=3))
    assert [tuple(u.shape) for u in units] == [(12, 7, 7)] * 3  # 4x4 patches of 28 px: a 7x7 grid
    fig = viz.token_mixing_figure(units)
    assert len(fig.axes) == 3
    path = viz.plot_token_mixing_patches(units, tmp_path / "mix.png")
    assert png_size(path) == (640, 720)  # 2x2 grid of 3.2 x 3.4 inch panels (+0.4) at 100 dpi


def test_a_one_panel_token_mixing_figure_wraps_its_title_inside_the_figure():
    units = viz.vision_token_mixing_units(tiny_mixer(depth=1))
    for fig in (viz.token_mixing_figure(units), viz.token_mixing_figure(units * 2)):
        fig.canvas.draw()
        title = fig._suptitle.get_window_extent()
        assert 0 <= title.x0 and title.x1 <= fig.bbox.width, (title, fig.bbox.width)  # the served page showed it cut
    assert "\n" not in fig._suptitle.get_text()  # two panels: one line, as before


def test_reference_mixer_patch_mixing_and_filters(tmp_path):
    model = create_model("mlp_mixer_seed", n_layers=2, embedding_dim=8, mlp_dim=5, clf_dim=16)
    units = viz.vision_token_mixing_units(model)
    assert [tuple(u.shape) for u in units] == [(5, 4, 4)] * 2  # 7x7 patches: a 4x4 grid
    stem = viz.find_patch_stem(model)
    assert png_size(viz.plot_patch_filters(stem.proj.weight, tmp_path / "filters.png")) == (600, 630)


def test_rgb_patch_filters_stay_colour():
    model = create_model("mixer_tiny_32", depth=1, hidden_dim=10, tokens_mlp_dim=8, channels_mlp_dim=8)
    assert viz.patch_filter_images(viz.find_patch_stem(model).proj.weight).shape == (10, 3, 4, 4)
    assert viz.tile_images(viz.patch_filter_images(model.stem.proj.weight)).shape == (3, 3 * 5 + 1, 4 * 5 + 1)  # 10 tiles: 3 rows x 4 columns


def test_tile_images_layout_and_scaling():
    tiles = torch.randn(5, 3, 3)
    tiles[0] = 0
    mosaic = viz.tile_images(tiles, symmetric=True)
    assert mosaic.shape == (9, 13)  # 2 rows x 3 columns of 3x3 tiles with 1-pixel separators
    assert mosaic.min() >= 0 and mosaic.max() <= 1
    assert torch.all(mosaic[1:4, 1:4] == 0.5)  # a zero weight is the colormap's centre
    assert torch.isclose(viz.tile_images(tiles[1:2]).max(), torch.tensor(1.0))


def test_text_matrices_panels_and_causal_triangle(tmp_path):
    model = StandInLM(layers=3)
    matrices = viz.text_mixing_matrices(model)
    assert len(viz.mixing_matrix_figure(matrices).axes) == 3
    assert png_size(viz.plot_token_mixing_matrices(matrices, tmp_path / "m.png")) == (680, 720)
    image = viz.colorize(matrices[0])  # (3, T, T)
    centre = viz.colorize(torch.zeros(1, 1))[:, 0, 0]
    upper = torch.ones(8, 8).triu(1).bool()
    assert torch.allclose(image[:, upper], centre[:, None].expand(3, int(upper.sum())))
    heads = viz.mixing_matrix_figure([torch.randn(2, 8, 8)] * 3)
    assert len(heads.axes) == 3 and heads.axes[0].images[0].get_array().shape == (8, 17)  # heads side by side


def test_char_embeddings_scatter(tmp_path):
    weights = torch.randn(6, 5)
    path = viz.plot_char_embeddings(weights, viz.vocab_labels(tokenizer(), 6), tmp_path / "e.png")
    assert png_size(path) == (700, 700)
    with pytest.raises(ValueError, match="6 embedding rows"):
        viz.plot_char_embeddings(weights, ["a"], tmp_path / "bad.png")
    points, _ = viz.plots._project_2d(weights)
    centered = weights - weights.mean(0)
    # PCA keeps the two directions of largest variance: their variance is the top two singular values squared
    top = torch.linalg.svdvals(centered)[:2] ** 2
    assert torch.allclose((points**2).sum(0).sort(descending=True).values, top, rtol=1e-4)


def test_vocab_labels_spell_out_specials():
    assert viz.vocab_labels(tokenizer(), 7) == ["\\n", "␣", "T", "a", "b", "c", "#6"]
    assert viz.vocab_labels(CharTokenizer("ab", boundary="\n"), 3) == ["<b>", "a", "b"]


def test_link_functions_mark_segment_edges(tmp_path):
    layer = StandInLinks()
    x, y = layer.link_functions()
    fig = viz.link_function_figure(x, y, layer.segment_edges)
    assert len(fig.axes) == 6
    assert all(len(ax.lines) == 1 + 4 for ax in fig.axes)  # the link plus one dashed line per segment edge
    assert png_size(viz.plot_link_functions(x, y, layer.segment_edges, tmp_path / "l.png")) == (780, 470)


def test_curves_one_panel_per_logged_metric(tmp_path):
    records = [{"step": s, "split": "train", "loss": 2 / s} for s in range(1, 6)]
    records += [{"step": 5, "split": "test", "loss": 0.5, "acc": 0.8}]
    assert len(viz.curves_figure({"run": records}).axes) == 2
    assert png_size(viz.plot_curves(records, tmp_path / "c.png")) == (1040, 485)  # 4.6 in + 0.25 in per run
    with pytest.raises(ValueError, match="no loss"):
        viz.plot_curves([], tmp_path / "empty.png")


def five_runs_of_different_lengths() -> dict[str, list[dict]]:
    """Metrics records of 5 runs, 321 to 8,718 steps, each ending with one val record (one point per series)."""
    runs = {}
    for index, steps in enumerate((321, 900, 2000, 5000, 8718)):
        records = [{"step": s, "split": "train", "loss": 3 / (1 + s / 100), "samples_per_sec": 1000.0 * (index + 1)}
                   for s in range(50, steps, 50)] + [{"step": steps, "split": "train", "loss": 0.4,
                                                       "samples_per_sec": 900.0 * (index + 1)}]
        runs[f"run{index}"] = records + [{"step": steps, "split": "val", "loss": 0.5, "acc": 0.9 - index / 100}]
    return runs


def test_curve_legend_sits_outside_every_plot_and_single_points_have_markers():
    fig = viz.curves_figure(five_runs_of_different_lengths())
    fig.canvas.draw()
    legend = fig.legends[0].get_window_extent()
    assert all(not legend.overlaps(ax.get_window_extent()) for ax in fig.axes)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [f"run{i}" for i in range(5)] + ["train", "val"]
    accuracy = fig.axes[1]  # only val records hold acc: five series of one point each
    assert len(accuracy.lines) == 5 and all(len(line.get_xdata()) == 1 for line in accuracy.lines)
    assert all(line.get_marker() == "o" for line in accuracy.lines)


def test_curves_against_samples_and_wall_time():
    records = [{"step": 10, "split": "train", "loss": 2.0, "samples_per_sec": 100.0},
               {"step": 20, "split": "train", "loss": 1.5, "samples_per_sec": 50.0},
               {"step": 20, "split": "val", "loss": 1.7}]
    seconds = viz.step_to_x(records, "time", step_samples=10)
    assert [seconds(s) for s in (0, 10, 15, 20)] == [0.0, 1.0, 2.0, 3.0]  # 10 steps x 10 samples at 100/s, then 50/s
    assert viz.step_to_x(records, "samples", step_samples=10)(20) == 200.0
    fig = viz.curves_figure({"run": records}, x="time", step_samples=10)
    assert fig.axes[0].get_xlabel() == "wall time (s, rebuilt from samples/s)"
    assert [list(line.get_xdata()) for line in fig.axes[0].lines] == [[1.0, 3.0], [3.0]]
    runs = five_runs_of_different_lengths()
    fig = viz.curves_figure(runs, x="time", step_samples=dict.fromkeys(runs, 32))
    for line in fig.axes[0].lines:
        assert all(later > earlier for earlier, later in zip(line.get_xdata(), line.get_xdata()[1:]))
    with pytest.raises(ValueError, match="no train records with samples_per_sec"):
        viz.step_to_x([{"step": 5, "split": "train", "loss": 1.0}], "time", step_samples=10)


def test_crowded_embedding_labels_never_overlap():
    torch.manual_seed(0)
    weights = torch.randn(90, 128) * 0.01  # a pile in the centre...
    weights[:6] += torch.randn(6, 128) * 3  # ...and a few outliers
    chars = [chr(33 + i) for i in range(90)]
    fig = viz.char_embedding_figure(weights, chars)
    fig.canvas.draw()
    boxes = [text.get_window_extent() for text in fig.axes[0].texts]
    assert 6 <= len(boxes) < 90 and f"{len(boxes)} of 90 labelled" in fig.axes[0].get_title()
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert {t.get_text() for t in fig.axes[0].texts} >= set(chars[:6])  # the outliers keep their labels


def test_figures_for_text_model(tmp_path):
    figures = viz.figures_for_model(StandInLM(), tmp_path, tokenizer())
    assert sorted(figures) == ["char_embeddings", "link_functions_1", "token_mixing"]
    assert all(p.is_file() for p in figures.values())


def _tags(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    acc.Reload()
    return acc.Tags()


def test_tensorboard_hook_text_model(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    hook = viz.tensorboard_hook(None, tokenizer(), max_new_tokens=5)
    hook(1, StandInLM(), writer)
    writer.close()
    tags = _tags(tmp_path)
    assert {"token_mixing/layer_01", "token_mixing/layer_03", "link_functions/links"} <= set(tags["images"])
    assert (tmp_path / "projector_config.pbtxt").is_file()  # the character embedding projector
    metadata = next(tmp_path.glob("*/char_embeddings/metadata.tsv")).read_text().splitlines()
    assert metadata == ["\\n", "␣", "T", "a", "b", "c"]
    assert "samples/text/text_summary" in tags["tensors"]  # the stand-in generates through allmlp.generate


def test_training_writes_tensorboard_images_and_viz_cli(tiny_fashion, tmp_path, tiny_run):
    from allmlp.cli import main

    run_dir = tiny_run(tmp_path, "fashion_mixer", f"data.path={tiny_fashion}", "train.max_steps=12",
                       "train.eval_interval=6", "train.viz_interval=4", "train.log_interval=4")
    tags = _tags(run_dir)
    assert {"token_mixing/layer_01", "token_mixing/layer_02", "patch_embedding/filters"} <= set(tags["images"])
    assert "train/loss" in tags["scalars"] and "test/acc" in tags["scalars"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    acc.Reload()
    # evaluations at 6 and 12 (the end), and every train.viz_interval=4 steps in between
    assert [e.step for e in acc.Images("token_mixing/layer_01")] == [4, 6, 8, 12]
    assert main(["viz", str(run_dir)]) == 0
    for name in ("curves", "token_mixing", "patch_projections", "confusion_test"):
        assert png_size(run_dir / f"{name}.png")[0] > 300, name


# ---- the project's real text and high-order models, through the same figures ----

def test_real_text_models_give_their_figures(tmp_path):
    causal = create_model("causal_mixer", vocab_size=7, context_length=8, embedding_dim=8, depth=3,
                          channels_mlp_dim=8, num_heads=2)
    matrices = viz.text_mixing_matrices(causal)
    assert len(matrices) == 3 and tuple(matrices[0].shape) == (2, 8, 8)
    assert torch.all(matrices[0].triu(1) == 0)  # causal: nothing flows from later positions
    chat = create_model("chat_mixer", vocab_size=7, context_length=8, embedding_dim=8, depth=2, tokens_mlp_dim=4,
                        channels_mlp_dim=8)
    assert len(viz.text_mixing_matrices(chat)) == 2 and viz.vision_token_mixing_units(chat) == []
    bengio = create_model("bengio", vocab_size=6, embedding_dim=2)
    figures = viz.figures_for_model(bengio, tmp_path, tokenizer())
    assert list(figures) == ["char_embeddings"]
    high = create_model("ho_small", vocab_size=6, context_length=4, hidden_width=4, hidden_layers=1)
    layers = viz.link_function_layers(high)
    assert len(layers) >= 2
    x, y = layers[0][1].link_functions()
    fig = viz.link_function_figure(x, y, layers[0][1].segment_edges)
    assert len(fig.axes[0].lines) == 1 + len(layers[0][1].segment_edges)


def test_text_training_logs_samples_and_projector(tmp_path, tiny_run):
    text_file = tmp_path / "tiny.txt"
    text_file.write_text("the cat sat on the mat. " * 60)
    run_dir = tiny_run(tmp_path, "shakespeare_mixer", "data.name=text", f"data.path={text_file}",
                       "model.name=causal_mixer", "train.max_steps=6", "train.eval_interval=3", "train.log_interval=3")
    tags = _tags(run_dir)
    assert {"token_mixing/layer_01", "token_mixing/layer_02"} <= set(tags["images"])
    assert "samples/text/text_summary" in tags["tensors"]
    assert (run_dir / "projector_config.pbtxt").is_file()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    acc.Reload()
    samples = [e.tensor_proto.string_val[0].decode() for e in acc.Tensors("samples/text/text_summary")]
    assert [e.step for e in acc.Tensors("samples/text/text_summary")] == [3, 6]
    assert all(len(s.strip()) >= 100 for s in samples)  # prompt + 200 generated chars, as an indented code block
