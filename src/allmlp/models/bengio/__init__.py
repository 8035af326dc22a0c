"""The Bengio et al. 2003 character MLP three ways (makemore parts 2-4): with torch's kernels (`module`), from raw
tensor ops (`raw`), from hand-written layers (`layers`), all with one set of canonical weights (`weights`) and a
hand-written backward pass (`backprop`)."""

from .backprop import manual_loss_and_grads
from .layers import LayersBengio
from .module import BengioMLP
from .raw import RawTensorsBengio
from .weights import copy_weights

__all__ = ["BengioMLP", "LayersBengio", "RawTensorsBengio", "copy_weights", "manual_loss_and_grads"]
