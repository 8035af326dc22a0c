"""Every training command of the language-interpolation project, in its own words.

`python examples/high_order_interpolation.py WORDS` is `allmlp train book_highorder WORDS` here, and
`python examples/language_cellular_automata.py WORDS` is `allmlp train book_centered WORDS`. The tests check
that each line starts near uniform guessing; benchmarks/highorder.py trains each one against the clock.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReferenceLine:
    """One of its training commands: the preset that stands for its script, its words, its own result."""

    name: str
    preset: str
    words: str
    reported: str = ""  # what the project reports for this line, where it reports something


REFERENCE_LINES = (
    ReferenceLine("single_case", "book_highorder", "data.type=sequence"),
    ReferenceLine("piecewise_constant", "book_highorder",
                  "data.type=sequence net=large_single_layer net.hidden.width=200 max_epochs=100 optimizer.lr=1e-3 "
                  "batch_size=1000 net.layer_type=discontinuous net.n=1 net.segments=150 net.hidden.layers=3"),
    ReferenceLine("linear_1_hidden", "book_highorder",
                  "data.type=sequence net=large_single_layer net.hidden.width=200 max_epochs=100 optimizer.lr=1e-4 "
                  "batch_size=1000"),
    ReferenceLine("linear_2_hidden", "book_highorder",
                  "data.type=sequence net=large_double_layer max_epochs=100 net.hidden.width=250 optimizer.lr=1e-5"),
    ReferenceLine("quadratic_1_hidden", "book_highorder",
                  "data.type=sequence net=large_single_layer net.hidden.width=250 max_epochs=100 net.n=3 "
                  "optimizer.lr=1e-4"),
    ReferenceLine("quadratic_3_hidden", "book_highorder",
                  "data.type=sequence net=small net.hidden.width=250 max_epochs=100 net.n=3 net.hidden.layers=3 "
                  "optimizer.lr=1e-5"),
    ReferenceLine("cubic_3_hidden", "book_highorder",
                  "data.type=sequence net=small net.hidden.width=250 max_epochs=100 net.n=4 net.hidden.layers=3 "
                  "optimizer.lr=1e-5"),
    ReferenceLine("quartic_1_hidden", "book_highorder",
                  "data.type=sequence net=large_single_layer net.hidden.width=200 max_epochs=100 optimizer.lr=1e-4 "
                  "batch_size=1000 net.n=5"),
    ReferenceLine("high_order_input_only", "book_highorder",
                  "data.type=sequence net=large_standard net.hidden.width=1000 max_epochs=100 optimizer.lr=1e-4"),
    ReferenceLine("no_hidden_layer", "book_highorder",
                  "data.type=sequence net=large_single_layer net.hidden.layers=0 max_epochs=100 optimizer.lr=1e-4 "
                  "batch_size=1000 net.layer_type=discontinuous",
                  "about 95% accuracy (memorising The Dunwich Horror, 100 epochs)"),
    ReferenceLine("transformer", "book_highorder",
                  "data.type=sequence net=transformer max_epochs=100 optimizer.lr=1e-3 batch_size=512 "
                  "net.layer_type=continuous data.repeats=5 net.n=2 data.max_features=10 optimizer.patience=20 "
                  "initialize.type=linear"),
    ReferenceLine("high_order_input_transformer", "book_highorder",
                  "data.type=sequence net=transformer max_epochs=100 optimizer.lr=1e-4 batch_size=16 "
                  "net.layer_type=continuous data.repeats=1 net.n=3 data.max_features=20 optimizer.patience=20 "
                  "initialize.type=linear accumulate_grad_batches=16 net.segments=2 "
                  "net.model_type=high_order_input_transformer optimizer=lion"),
    ReferenceLine("conv", "book_highorder",
                  "data.type=sequence net=conv max_epochs=100 optimizer.lr=1e-4 batch_size=1000 "
                  "data.add_channel_dimension=true"),
    ReferenceLine("mamba", "book_highorder",
                  "data.type=sequence net=mamba optimizer.lr=1e-4 data.max_features=16 batch_size=1024"),
    ReferenceLine("tail_focus", "book_highorder",
                  "data.type=sequence net=tail_focus max_epochs=100 optimizer.lr=1e-3 batch_size=8000 "
                  "data.add_channel_dimension=true"),
    ReferenceLine("centered", "book_centered", "net.features=11 data.type=centered"),
)
