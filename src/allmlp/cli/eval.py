"""`allmlp eval RUN`: metrics of a trained run on held-out data, saved as eval.json in the run folder."""

from __future__ import annotations

import json

from .common import parser


def main(argv: list[str]) -> int:
    """Evaluate a run folder, write eval.json beside it and print the metrics."""
    from ..checkpoint import check_run_dir, load_run
    from ..viz import evaluate_with_figures

    command = parser("eval", "Evaluate a run folder: accuracy and confusion matrix (images), "
                             "loss / bits per char / perplexity (text).")
    command.add_argument("run", help="run folder written by allmlp train (or a file in it)")
    command.add_argument("--split", default="test", help="which split to evaluate (default: test)")
    args = command.parse_args(argv)
    run_dir = check_run_dir(args.run)
    model, cfg, tokenizer = load_run(run_dir)
    result = evaluate_with_figures(model, cfg, run_dir, split=args.split, tokenizer=tokenizer)
    (run_dir / "eval.json").write_text(json.dumps(result, indent=2))
    for key, value in result.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for inner, v in value.items():
                print(f"  {inner:<14} {v:.4f}")
        else:
            print(f"{key:<16} {value:.4f}" if isinstance(value, float) else f"{key:<16} {value}")
    return 0
