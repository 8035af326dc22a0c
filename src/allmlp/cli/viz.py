"""`allmlp viz RUN [--out DIR] [--no-confusion] [--x step|samples|time]`: write the run's figures as PNGs."""

from __future__ import annotations

from .common import parser


def main(argv: list[str]) -> int:
    """Write every figure of the run folder and list where each went."""
    from ..viz import X_AXES, figures_for_run

    command = parser("viz", "Write PNG figures of a trained run from its checkpoint alone: loss/accuracy curves, "
                            "token-mixing weights per layer, patch projections, character embeddings, confusion "
                            "matrix, link functions.")
    command.add_argument("run", help="run folder written by allmlp train")
    command.add_argument("--out", help="folder for the PNGs (default: the run folder)")
    command.add_argument("--no-confusion", action="store_true",
                         help="skip the confusion matrix (it evaluates the model on the test images)")
    command.add_argument("--x", choices=list(X_AXES), default="step",
                         help="curves against step, samples seen, or wall time (default: step)")
    args = command.parse_args(argv)
    figures = figures_for_run(args.run, args.out, confusion=not args.no_confusion, log=print, x=args.x)
    for name, path in figures.items():
        print(f"{name:<20} {path}")
    return 0
