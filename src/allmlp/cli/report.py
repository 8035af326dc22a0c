"""`allmlp report RUN [RUN ...] [--out FILE] [--x step|samples|time] [--vs KEY]`: a self-contained HTML report."""

from __future__ import annotations

from .common import parser as common_parser


def main(argv: list[str]) -> int:
    """Write the page of one run, or the comparison of several, and print where it is."""
    from .. import viz
    from ..report import compare_report, single_report

    parser = common_parser("report", (
        "Write one self-contained HTML page (figures embedded, opens without network): for one run its config, "
        "parameters, metrics, figures and samples; for several runs a side-by-side comparison. "
        "--vs model.depth adds the final metric of each run against that config key (e.g. accuracy vs blocks)."))
    parser.add_argument("runs", nargs="+", help="run folders written by allmlp train")
    parser.add_argument("--out", help="HTML file (default: RUN/report.html for one run, report.html for several)")
    parser.add_argument("--samples", type=int, default=3, help="generated samples for language models (default 3)")
    parser.add_argument("--no-confusion", action="store_true", help="skip the confusion matrix (needs the test data)")
    parser.add_argument("--x", choices=list(viz.X_AXES), default="step",
                        help="curves against step, samples seen, or wall time (rebuilt from samples/s; default step)")
    parser.add_argument("--vs", metavar="KEY", help="draw the final metric against this dotted config key, e.g. "
                        "model.depth; written as OUT_vs_KEY.png too")
    parser.add_argument("--metric", help="with --vs: the metric, e.g. test/acc (default: val or test accuracy for "
                        "image runs, val loss for text)")
    args = parser.parse_args(argv)
    if args.metric and not args.vs:
        raise ValueError("--metric goes with --vs KEY (the figure of that metric against a config key)")
    if len(args.runs) == 1 and not args.vs:
        out = single_report(args.runs[0], args.out, samples=args.samples, confusion=not args.no_confusion, x=args.x)
    else:
        out = compare_report(args.runs, args.out or "report.html", x=args.x, vs=args.vs, metric=args.metric)
    print(f"report: {out}")
    if args.vs:
        print(f"figure: {out.with_name(f'{out.stem}_vs_{args.vs}.png')}")
    return 0
