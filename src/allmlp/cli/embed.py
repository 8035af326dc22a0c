"""`allmlp embed RUN --data SPLIT --out feats.npy`: write the pooled features of a data split as a numpy array."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import parser as common_parser


def main(argv: list[str]) -> int:
    """Write the (N, C) float32 features of split `--data` (and, with `--labels`, its labels) as .npy files."""
    from ..embed import embed_run

    parser = common_parser("embed", "Pooled features (the head's input) of a trained image model over a data split, "
                                    "as an (N, C) float32 .npy file.")
    parser.add_argument("run", help="run folder written by allmlp train (or a file in it)")
    parser.add_argument("--data", default="test", help="split: train, val or test (default: test)")
    parser.add_argument("--out", required=True, help="output .npy file")
    parser.add_argument("--labels", help="also write the split's labels (N,) int64 to this .npy file")
    parser.add_argument("--ema", action="store_true", help="use the averaged weights (model_ema.safetensors)")
    args = parser.parse_args(argv)
    features, labels = embed_run(args.run, args.data, args.ema)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, features)
    if args.labels:
        np.save(args.labels, labels)
    print(f"{args.data}: {features.shape[0]} images x {features.shape[1]} features -> {out}")
    return 0
