"""`allmlp eval RUN`: metrics of a trained run on held-out data, saved as eval.json in the run folder."""

from __future__ import annotations

import json

from .common import parser


def main(argv: list[str]) -> int:
    """Evaluate a run folder, write eval.json (eval_ema.json, eval_64px.json, ...) beside it and print the metrics."""
    from ..checkpoint import check_run_dir, load_run
    from ..models import model_info
    from ..viz import evaluate_with_figures

    command = parser("eval", "Evaluate a run folder: accuracy and confusion matrix (images), "
                             "loss / bits per char / perplexity (text).")
    command.add_argument("run", help="run folder written by allmlp train (or a file in it)")
    command.add_argument("--split", default="test", help="which split to evaluate (default: test)")
    command.add_argument("--ema", action="store_true",
                         help="evaluate the moving average of the weights (model_ema.safetensors, train.ema_decay)")
    command.add_argument("--img-size", type=int, default=0, metavar="N",
                         help="image models: resize the images to N x N first; the token-mixing weights follow the "
                              "new patch grid (the finetune rule, on the fly)")
    args = command.parse_args(argv)
    run_dir = check_run_dir(args.run)
    model, cfg, tokenizer = load_run(run_dir, ema=args.ema)
    tag = "_ema" if args.ema else ""
    if args.img_size:
        if model_info(cfg.model.name)["task"] != "image":
            raise ValueError(f"--img-size is for image models; {run_dir} holds {cfg.model.name}, a "
                             f"{model_info(cfg.model.name)['task']} model")
        cfg.data.img_size, tag = args.img_size, f"{tag}_{args.img_size}px"
    result = evaluate_with_figures(model, cfg, run_dir, split=args.split, tokenizer=tokenizer, tag=tag)
    result = {"weights": "ema" if args.ema else "raw", **({"img_size": args.img_size} if args.img_size else {}),
              **result}
    (run_dir / f"eval{tag}.json").write_text(json.dumps(result, indent=2))
    for key, value in result.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for inner, v in value.items():
                print(f"  {inner:<14} {v:.4f}")
        else:
            print(f"{key:<16} {value:.4f}" if isinstance(value, float) else f"{key:<16} {value}")
    return 0
