"""The language-interpolation project's networks, registered as text models `ho_<its name>` (`net=small` in a
preset or override maps to `model.name=ho_small`, see compat.py). Factory arguments are its `net.*` keys;
`context_length` is its `data.max_features`."""

from __future__ import annotations

from .. import register_model
from .networks import (HighOrderConvNet, HighOrderInputMLP, HighOrderMamba, HighOrderMLP, HighOrderTransformer,
                       TailFocusNet)

@register_model("ho_small", task="text")
def ho_small(vocab_size: int = 65, context_length: int = 16, n: int = 2, segments: int = 2,
             layer_type: str = "continuous", hidden_width: int = 64, hidden_layers: int = 2,
             normalization: str = "layer", initialization: str = "uniform", input_segments: int = 0) -> HighOrderMLP:
    """Small sparse high-order MLP: piecewise input, hidden and output layers."""
    return HighOrderMLP(vocab_size, context_length, n, segments, layer_type, hidden_width, hidden_layers,
                        normalization, initialization, input_segments)


@register_model("ho_large_single_layer", task="text")
def ho_large_single_layer(vocab_size: int = 65, context_length: int = 16, n: int = 2, segments: int = 2,
                          layer_type: str = "continuous", hidden_width: int = 200, hidden_layers: int = 1,
                          normalization: str = "layer", initialization: str = "uniform",
                          input_segments: int = 0) -> HighOrderMLP:
    """Sparse high-order MLP with one hidden layer (hidden_layers=0: input and output layers only)."""
    return HighOrderMLP(vocab_size, context_length, n, segments, layer_type, hidden_width, hidden_layers,
                        normalization, initialization, input_segments)


@register_model("ho_large_double_layer", task="text")
def ho_large_double_layer(vocab_size: int = 65, context_length: int = 16, n: int = 2, segments: int = 2,
                          layer_type: str = "continuous", hidden_width: int = 250, hidden_layers: int = 2,
                          normalization: str = "layer", initialization: str = "uniform",
                          input_segments: int = 0) -> HighOrderMLP:
    """Sparse high-order MLP with two hidden layers."""
    return HighOrderMLP(vocab_size, context_length, n, segments, layer_type, hidden_width, hidden_layers,
                        normalization, initialization, input_segments)


@register_model("ho_centered", task="text")
def ho_centered(vocab_size: int = 65, context_length: int = 10, n: int = 2, segments: int = 2,
                layer_type: str = "continuous", hidden_width: int = 200, hidden_layers: int = 1,
                normalization: str = "layer", initialization: str = "uniform", input_segments: int = 0) -> HighOrderMLP:
    """Centered high-order MLP: the middle character from context_length/2 on each side (the cellular automaton)."""
    return HighOrderMLP(vocab_size, context_length, n, segments, layer_type, hidden_width, hidden_layers,
                        normalization, initialization, input_segments, lm_kind="centered")


@register_model("ho_large_standard", task="text")
def ho_large_standard(vocab_size: int = 65, context_length: int = 16, n: int = 2, layer_type: str = "continuous",
                      hidden_width: int = 256, hidden_layers: int = 2, normalization: str = "layer",
                      initialization: str = "uniform", input_segments: int = 0) -> HighOrderInputMLP:
    """Piecewise input layer (one segment per character), then a standard ReLU MLP."""
    return HighOrderInputMLP(vocab_size, context_length, n, layer_type, hidden_width, hidden_layers,
                             normalization, initialization, input_segments)


@register_model("ho_conv", task="text")
def ho_conv(vocab_size: int = 65, context_length: int = 16, n: int = 2, segments: int = 2,
            layer_type: str = "continuous", hidden_width: int = 32, hidden_layers: int = 2, kernel_size: int = 3,
            stride: int = 2, normalization: str = "layer", initialization: str = "uniform",
            input_segments: int = 0) -> HighOrderConvNet:
    """Piecewise 1-d convolutions (hidden_width channels, hidden_layers conv layers), piecewise output layer."""
    return HighOrderConvNet(vocab_size, context_length, n, segments, layer_type, hidden_width, hidden_layers,
                            kernel_size, stride, normalization, initialization, input_segments)


@register_model("ho_tail_focus", task="text")
def ho_tail_focus(vocab_size: int = 65, context_length: int = 64, n: int = 2, segments: int = 2,
                  layer_type: str = "continuous", hidden_width: int = 128, hidden_layers: int = 1, focus: int = 4,
                  chunk_features: int = 16, normalization: str = "layer", initialization: str = "uniform",
                  input_segments: int = 0) -> TailFocusNet:
    """Tail focus: the newest `focus` chars at full detail, older chunks doubling in length, squeezed each."""
    return TailFocusNet(vocab_size, context_length, n, segments, layer_type, hidden_width, hidden_layers, focus,
                        chunk_features, normalization, initialization, input_segments)


@register_model("ho_transformer", task="text")
def ho_transformer(vocab_size: int = 65, context_length: int = 16, n: int = 2, segments: int = 2,
                   layer_type: str = "continuous", hidden_width: int = 64, hidden_layers: int = 2, heads: int = 4,
                   initialization: str = "uniform", input_segments: int = 0) -> HighOrderTransformer:
    """High-order transformer: piecewise embedding, causal blocks whose projections are piecewise layers."""
    return HighOrderTransformer(vocab_size, context_length, n, segments, layer_type, hidden_width, hidden_layers,
                                heads, initialization, input_segments, high_order_blocks=True)


@register_model("ho_high_order_input_transformer", task="text")
def ho_high_order_input_transformer(vocab_size: int = 65, context_length: int = 16, n: int = 2, segments: int = 2,
                                    layer_type: str = "continuous", hidden_width: int = 64, hidden_layers: int = 2,
                                    heads: int = 4, initialization: str = "uniform",
                                    input_segments: int = 0) -> HighOrderTransformer:
    """Piecewise character embedding, then standard (ReLU MLP) causal transformer blocks."""
    return HighOrderTransformer(vocab_size, context_length, n, segments, layer_type, hidden_width, hidden_layers,
                                heads, initialization, input_segments, high_order_blocks=False)


@register_model("ho_mamba", task="text")
def ho_mamba(vocab_size: int = 65, context_length: int = 16, n: int = 2, layer_type: str = "continuous",
             hidden_width: int = 64, hidden_layers: int = 2, initialization: str = "uniform",
             input_segments: int = 0, d_state: int = 4) -> HighOrderMamba:
    """Piecewise character embedding, then a Mamba state-space stack (mambapy, parallel scan, d_state 4)."""
    return HighOrderMamba(vocab_size, context_length, n, layer_type, hidden_width, hidden_layers, initialization,
                          input_segments, d_state)
