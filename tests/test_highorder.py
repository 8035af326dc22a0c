"""Piecewise polynomial layers, the language-interpolation project's networks and config names, and the cellular
automaton."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from allmlp.automaton import neighbourhoods, reapply
from allmlp.config import ConfigError
from allmlp.configure import build_config
from allmlp.data.text import CharTokenizer
from allmlp.models import count_parameters, create_model, list_models
from allmlp.models.highorder.layers import (MaxAbsNorm, PiecewisePolynomial, PiecewisePolynomialConv1d, Polynomial,
                                            chebyshev_lobatto_nodes)
from allmlp.models.highorder.reference_lines import REFERENCE_LINES
from allmlp.compat import NETWORK_NAMES


@pytest.mark.parametrize("n,segments,layer_type,per_link", [
    (2, 2, "continuous", 3), (3, 4, "continuous", 9), (5, 3, "continuous", 13),
    (1, 150, "discontinuous", 150), (2, 2, "discontinuous", 4), (3, 5, "discontinuous", 15)])
def test_weights_per_link(n, segments, layer_type, per_link):
    layer = PiecewisePolynomial(7, 5, n=n, segments=segments, layer_type=layer_type)
    assert layer.weights_per_link == per_link
    assert count_parameters(layer) == 7 * 5 * per_link


def test_bad_layer_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="n=1 .*discontinuous"):
        PiecewisePolynomial(2, 2, n=1, layer_type="continuous")
    with pytest.raises(ValueError, match="layer_type"):
        PiecewisePolynomial(2, 2, layer_type="smooth")
    with pytest.raises(ValueError, match="normalization|initialization"):
        PiecewisePolynomial(2, 2, initialization="xavier")


def test_continuous_piecewise_linear_represents_abs_exactly():
    layer = PiecewisePolynomial(1, 1, n=2, segments=2, layer_type="continuous")
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([1.0, 0.0, 1.0]).view(1, 3, 1))  # values at x = -1, 0, 1
    x = torch.linspace(-1, 1, 201).unsqueeze(1)
    assert torch.allclose(layer(x), x.abs(), atol=1e-6)


@pytest.mark.parametrize("n", [2, 3, 4, 6])
def test_single_segment_order_n_fits_degree_n_minus_1_exactly(n):
    coefficients = torch.randn(n, generator=torch.Generator().manual_seed(n), dtype=torch.float64)

    def poly(x):
        return sum(c * x ** k for k, c in enumerate(coefficients))

    layer = Polynomial(1, 1, n=n).double()
    nodes = torch.tensor(chebyshev_lobatto_nodes(n), dtype=torch.float64)
    with torch.no_grad():  # interpolation at the nodes reproduces any polynomial of degree n-1
        layer.weight.copy_(poly(nodes).view(1, n, 1))
    x = torch.linspace(-1, 1, 101, dtype=torch.float64).unsqueeze(1)
    assert torch.allclose(layer(x), poly(x), atol=1e-10)
    # ... and least squares on the layer's features finds it from samples alone
    features = layer.dense_features(x)  # (101, n)
    solution = torch.linalg.lstsq(features, poly(x)).solution
    assert torch.allclose(features @ solution, poly(x), atol=1e-9)


def test_continuous_layer_is_continuous_at_segment_edges_discontinuous_is_not():
    torch.manual_seed(0)
    continuous = PiecewisePolynomial(3, 4, n=3, segments=5, layer_type="continuous")
    jumpy = PiecewisePolynomial(3, 4, n=3, segments=5, layer_type="discontinuous")
    edges = continuous.segment_edges[1:-1]  # interior boundaries
    eps = 1e-5
    for edge in edges.tolist():
        left, right = torch.full((1, 3), edge - eps), torch.full((1, 3), edge + eps)
        assert (continuous(left) - continuous(right)).abs().max() < 1e-3
        assert (jumpy(left) - jumpy(right)).abs().max() > 1e-2


def test_only_the_active_segment_receives_gradient():
    layer = PiecewisePolynomial(2, 3, n=3, segments=4, layer_type="discontinuous")
    x = torch.empty(16, 2).uniform_(0.01, 0.49)  # segment 2 of [-1, 1] in 4 segments is [0, 0.5)
    layer(x).sum().backward()
    touched = layer.weight.grad.abs().sum(dim=(0, 2)) > 0  # (weights per link,)
    assert touched.tolist() == [k in (6, 7, 8) for k in range(12)]


@pytest.mark.parametrize("layer_type,n", [("continuous", 2), ("continuous", 4), ("discontinuous", 3),
                                          ("discontinuous", 1)])
def test_sparse_and_dense_passes_agree_in_values_and_gradients(layer_type, n):
    torch.manual_seed(1)
    sparse = PiecewisePolynomial(5, 6, n=n, segments=7, layer_type=layer_type, impl="sparse").double()
    dense = PiecewisePolynomial(5, 6, n=n, segments=7, layer_type=layer_type, impl="dense").double()
    dense.load_state_dict(sparse.state_dict())
    x1 = (torch.rand(9, 5, dtype=torch.float64) * 2.2 - 1.1).requires_grad_()  # some inputs extrapolate
    x2 = x1.detach().clone().requires_grad_()
    y1, y2 = sparse(x1), dense(x2)
    assert torch.allclose(y1, y2, atol=1e-12)
    y1.square().sum().backward()
    y2.square().sum().backward()
    assert torch.allclose(sparse.weight.grad, dense.weight.grad, atol=1e-10)
    if n > 1:  # piecewise constant links have zero slope: no gradient reaches the input
        assert torch.allclose(x1.grad, x2.grad, atol=1e-10)


def test_linear_initialization_is_a_straight_line_and_link_functions_match_forward():
    layer = PiecewisePolynomial(2, 3, n=3, segments=4, initialization="linear")
    x, y = layer.link_functions(points=50)  # (P,), (out, in, P)
    assert y.shape == (3, 2, 50)
    slope = (y[..., -1] - y[..., 0]) / (x[-1] - x[0])  # (out, in)
    assert torch.allclose(y, slope.unsqueeze(-1) * x, atol=1e-5)
    inputs = torch.stack([x, torch.zeros_like(x)], 1)  # input 1 at 0 contributes 0 on a line through 0
    assert torch.allclose(layer(inputs), y[:, 0].T, atol=1e-5)
    assert layer.segment_edges.tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_layer_output_stays_within_its_values_on_the_range_for_normalised_and_wild_inputs(n):
    torch.manual_seed(n)
    layer = PiecewisePolynomial(64, 8, n=n, segments=2).double()
    _, links = layer.link_functions(points=4001)  # (out, in, P): every link over [-1, 1]
    bound = links.abs().amax(-1).sum(-1)  # (out,): no output can exceed the sum of its links' maxima
    layer_normed = torch.nn.LayerNorm(64).double()(torch.randn(512, 64, dtype=torch.float64) * 5)
    assert layer_normed.abs().max() > 2  # the default norm does leave the range [-1, 1]
    for x in (layer_normed, torch.randn(512, 64, dtype=torch.float64) * 1e3):
        assert (layer(x).abs() <= bound * 1.001).all()
    edge = torch.full((1, 64), 1.0, dtype=torch.float64)
    assert torch.allclose(layer(edge + 0.3), layer(edge - 0.3))  # mirrored at the end of the range


def test_conv_layer_shapes_and_maxabs_norm():
    conv = PiecewisePolynomialConv1d(2, 5, kernel_size=3, stride=2, n=2, segments=3)
    assert conv(torch.rand(4, 2, 11) * 2 - 1).shape == (4, 5, 5)
    out = MaxAbsNorm()(torch.tensor([[2.0, -4.0, 1.0]]))
    assert out.tolist() == [[0.5, -1.0, 0.25]]


@pytest.mark.parametrize("its_name", NETWORK_NAMES)
def test_every_reference_network_builds_and_takes_a_training_step(its_name):
    name = f"ho_{its_name}"
    assert name in list_models("text")
    torch.manual_seed(0)
    small = {"vocab_size": 12, "hidden_width": 16}
    model = create_model(name, **small)
    x = torch.randint(0, 12, (8, model.context_length))
    y = torch.randint(0, 12, (8,))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(3):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert model(x).shape == (8, 12)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert losses[-1] < losses[0]


def test_no_hidden_layer_discontinuous_net_memorises_a_short_text():
    text = "the quick brown fox jumps over the lazy dog. " * 3
    tokenizer = CharTokenizer(text)
    ids = torch.tensor(tokenizer.encode(text))
    context = 4
    x = ids.unfold(0, context, 1)[:-1]  # (N, T)
    y = ids[context:]
    model = create_model("ho_large_single_layer", vocab_size=tokenizer.vocab_size, context_length=context,
                         hidden_layers=0, hidden_width=32, layer_type="discontinuous")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    for _ in range(150):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.95


def test_language_interpolation_option_names_map_onto_ours():
    cfg = build_config(None, ["data.type=sequence", "net=transformer", "max_epochs=100", "optimizer.lr=1e-3",
                              "batch_size=512", "net.layer_type=continuous", "data.repeats=5", "net.n=2",
                              "data.max_features=10", "optimizer.patience=20", "initialize.type=linear"])
    assert cfg.model.name == "ho_transformer" and cfg.data.type == "window"
    assert cfg.model.args == {"layer_type": "continuous", "n": 2, "initialization": "linear"}
    assert (cfg.train.max_epochs, cfg.optim.lr, cfg.data.batch_size) == (100, 1e-3, 512)
    assert (cfg.data.repeats, cfg.data.context_length, cfg.optim.patience) == (5, 10, 20)
    cfg = build_config(None, ["net=transformer", "net.model_type=high_order_input_transformer", "optimizer=lion",
                              "net.hidden.width=32", "net.hidden.layers=1", "accumulate_grad_batches=16"])
    assert cfg.model.name == "ho_high_order_input_transformer" and cfg.optim.name == "lion"
    assert cfg.model.args == {"hidden_width": 32, "hidden_layers": 1}
    assert cfg.train.accumulate_grad_batches == 16
    with pytest.raises(ConfigError, match="model.segments"):
        build_config(None, ["net=mamba", "net.segments=3"])  # mamba's input layer has one segment per char


def test_neighbourhoods_leave_out_the_middle_and_pad_the_ends():
    ids = torch.arange(1, 6)  # 1 2 3 4 5
    windows = neighbourhoods(ids, 4, pad=0)
    assert windows.tolist() == [[0, 0, 2, 3], [0, 1, 3, 4], [1, 2, 4, 5], [2, 3, 5, 0], [3, 4, 0, 0]]


def test_automaton_reapply_keeps_length_and_learns_a_rule():
    text = "abcabcabcabcabcabcabc"
    tokenizer = CharTokenizer(text + " ")
    model = create_model("ho_centered", vocab_size=tokenizer.vocab_size, context_length=2, hidden_width=16)
    assert model.lm_kind == "centered"
    ids = torch.tensor(tokenizer.encode(text))
    x = neighbourhoods(ids, 2, tokenizer.encode(" ")[0])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    torch.manual_seed(0)
    for _ in range(100):  # the middle char follows from its neighbours: b between a and c, ...
        loss = F.cross_entropy(model(x), ids)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    for length in (1, 2, 7, 30):
        source = ("cab" * 10)[:length]
        assert len(reapply(model, tokenizer, source, 3)) == length
    assert reapply(model, tokenizer, "abcabcab", 0) == "abcabcab"
    repaired = reapply(model, tokenizer, "abcabbabc", 1)  # the b at 5 sits between b and a: it must be c
    assert repaired[5] == "c" and repaired[2:4] == "ca"
    window_model = create_model("ho_small", vocab_size=tokenizer.vocab_size)
    with pytest.raises(ValueError, match="centered"):
        reapply(window_model, tokenizer, "abc", 1)


@pytest.mark.parametrize("line", REFERENCE_LINES, ids=[line.name for line in REFERENCE_LINES])
def test_every_reference_training_command_builds_a_config_and_model(line):
    cfg = build_config(line.preset, line.words.split())
    assert cfg.model.name.startswith("ho_") and cfg.data.type in ("window", "centered")
    with torch.device("meta"):  # the full-size model, without allocating it
        create_model(cfg.model.name, **{"vocab_size": 84, "context_length": cfg.data.context_length,
                                        **cfg.model.args})


def test_data_repeats_multiplies_the_steps_of_an_epoch(tmp_path):
    from allmlp.engine import total_steps
    from allmlp.tasks import build_experiment

    corpus = tmp_path / "book.txt"
    corpus.write_text("abcdefghij" * 100)
    words = ["data.name=text", f"data.path={corpus}", "data.max_chars=0", "batch_size=10", "net=small",
             "net.hidden.width=4", "max_epochs=2"]
    once = build_experiment(build_config("book_highorder", words))
    thrice = build_experiment(build_config("book_highorder", [*words, "data.repeats=3"]))
    assert once.train_batches.steps_per_epoch == 900 // 10  # 90% of 1000 chars, one target per window
    assert thrice.train_batches.steps_per_epoch == 3 * once.train_batches.steps_per_epoch
    cfg = build_config("book_highorder", [*words, "data.repeats=3"])
    assert total_steps(cfg.train, thrice.train_batches.steps_per_epoch) == 2 * 270


def test_generate_on_a_trained_centered_run_grows_the_prompt_and_shows_every_pass(tmp_path, capsys):
    from allmlp.cli import main
    from allmlp.automaton import AUTOMATON_GROW, DEFAULT_REAPPLY

    corpus = tmp_path / "book.txt"
    corpus.write_text("the cat sat on the mat. the dog sat on the log. " * 40)
    run = tmp_path / "centered"
    assert main(["train", "book_centered", "data.name=text", f"data.path={corpus}", "data.max_chars=0",
                 "net.features=4", "net.hidden.width=16", "max_epochs=0", "train.max_steps=30", "batch_size=64",
                 "train.progress=false", "train.eval_interval=0", "--run-dir", str(run)]) == 0
    capsys.readouterr()
    assert main(["generate", str(run), "--prompt", "the dog", "--seed", "0"]) == 0  # no --reapply: the default
    captured = capsys.readouterr()
    prompt_line, final = captured.out.splitlines()
    assert prompt_line == " " * (DEFAULT_REAPPLY * AUTOMATON_GROW) + "the dog"  # echoed, in its final columns
    assert len(final) == len("the dog") + 2 * DEFAULT_REAPPLY * AUTOMATON_GROW
    assert "automaton passes" in captured.err and len(captured.err.strip().splitlines()) == 1
    assert main(["generate", str(run), "--prompt", "the dog", "--reapply", "3", "--show-steps"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert [row.split(" | ")[0].strip() for row in rows] == ["0", "1", "2", "3"]
    assert rows[0].endswith("the dog") and rows[0].index("the dog") == rows[0].index("|") + 2 + 3 * AUTOMATON_GROW
    assert [len(row) for row in rows] == [len(rows[0]) + step * AUTOMATON_GROW for step in range(4)]


def test_layer_norm_before_a_piecewise_layer_starts_inside_its_range():
    torch.manual_seed(0)
    model = create_model("ho_small", vocab_size=30, hidden_width=256)
    hidden = model.hidden[0](model.input_layer(model.scalars(torch.randint(0, 30, (512, 16)))))  # (512, 256)
    assert (hidden.abs() <= 1).float().mean() > 0.99  # gain 1 left ~32% outside [-1, 1]



@pytest.mark.parametrize("its_name", NETWORK_NAMES)
def test_start_at_unigram_shifts_every_reference_network_logits_by_the_prior(its_name):
    if its_name == "mamba":
        pytest.importorskip("mambapy")
    torch.manual_seed(0)
    model = create_model(f"ho_{its_name}", vocab_size=12, hidden_width=16).eval()
    x = torch.randint(0, 12, (64, model.context_length))
    log_prior = torch.log_softmax(torch.randn(12), 0)
    with torch.no_grad():
        before = model(x)
        model.start_at_unigram(log_prior, weight_scale=0.1)
        after = model(x)
    # a piecewise head gets the prior through its weights (the active segment's basis sums to 1), a Linear through
    # its bias: either way exactly 0.1 x the old logits + the prior, for every input
    assert torch.allclose(after, 0.1 * before + log_prior, atol=1e-5)


def test_language_task_starts_a_high_order_net_at_the_unigram_entropy_not_uniform_guessing(tmp_path):
    from allmlp.tasks import language

    path = tmp_path / "skewed.txt"
    path.write_text(("a" * 30 + "bc" * 5 + "d\n") * 40)  # 5 chars, entropy ~0.93 nats, ln 5 = 1.61
    cfg = build_config("book_highorder", ["data.name=text", f"data.path={path}", "data.max_chars=0",
                                          "net=small", "net.hidden.width=32"])
    exp = language.build(cfg)
    counts = torch.bincount(exp.train_batches.tokens).double()
    entropy = float(-(counts / counts.sum() * (counts / counts.sum()).log()).sum())
    start = language.stream_loss(exp.model.eval(), exp.train_batches)  # every window of the training text
    assert entropy < 1.0 and abs(start - entropy) < 0.05


def test_uniform_initialization_has_the_reference_librarys_magnitude_and_is_the_default():
    torch.manual_seed(0)
    layer = PiecewisePolynomial(50, 40, n=3, segments=2)
    bound = 1 / 50
    assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.95 * bound
    assert float(layer.weight.std()) == pytest.approx(bound / 3 ** 0.5, rel=0.05)  # U(-b, b): std b / sqrt(3)
    assert create_model("ho_small", vocab_size=12).hidden[1].weight.abs().max() <= 1 / 64
