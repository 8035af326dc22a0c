"""`allmlp export RUN --format onnx|torchscript|pt2 [--out FILE]`: export a run and verify its logits."""

from __future__ import annotations

from .common import parser


def main(argv: list[str]) -> int:
    """Export the run's model and say how close the file's logits are to the checkpoint's."""
    from ..export import FORMATS, export_run

    command = parser("export", "Export a run's model for deployment and check that the file gives the "
                               "checkpoint's logits (onnx: onnxruntime, or onnx's reference evaluator when "
                               "onnxruntime is not installed).")
    command.add_argument("run", help="run folder written by allmlp train")
    command.add_argument("--format", default="onnx", choices=list(FORMATS),
                         help="onnx (default), torchscript (torch.jit.trace) or pt2 (torch.export)")
    command.add_argument("--out", help="output file (default: RUN/model.onnx, model.torchscript.pt or model.pt2)")
    command.add_argument("--atol", type=float, default=1e-4, help="largest accepted logit difference")
    args = command.parse_args(argv)
    done = export_run(args.run, args.format, args.out, args.atol)
    path = done["path"]
    print(f"exported {done['model']} to {path} ({args.format}, {path.stat().st_size / 1e6:.2f} MB); "
          f"max |logit difference| on 3 inputs: {done['max_diff']:.2e}")
    return 0
