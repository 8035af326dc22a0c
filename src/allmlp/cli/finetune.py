"""`allmlp finetune --weights FILE PRESET [overrides]`: train a mixer_*, resmlp_* or gmlp_* model from pretrained
weights."""

from __future__ import annotations

from pathlib import Path

from .common import parser as common_parser
from .common import train_and_report

EPILOG = """examples:
  allmlp finetune --weights Mixer-B_16.npz cifar10_mixer_4 --model mixer_b16 model.img_size=64 data.val_size=0
  allmlp finetune --weights jx_mixer_b16_224-76587d61.pth my_preset.yaml --model mixer_b16 model.img_size=384
  allmlp finetune --weights resmlp_12_no_dist.pth cifar10_mixer_4 --model resmlp_12 model.img_size=64
--model NAME replaces the preset's model section (its dimensions) by the variant NAME with its defaults.
"""


def main(argv: list[str]) -> int:
    """Train a mixer_*, resmlp_* or gmlp_* model from pretrained weights (new head, token mixing resized)."""
    from ..config import load_preset
    from ..configure import build_config
    from ..engine import default_run_dir
    from ..pretrained import load_pretrained, read_weights

    parser = common_parser("finetune", "Fine-tune a mixer_*, resmlp_* or gmlp_* model from official Mixer .npz, "
                                       "official ResMLP or timm-layout weights: new head for the data's classes, "
                                       "token-mixing weights resized to the new patch grid.", EPILOG)
    parser.add_argument("--weights", required=True, help="FILE.npz (google-research), .pth/.pt/.bin or .safetensors")
    parser.add_argument("preset", help="preset name or YAML file (its model: a mixer_*, resmlp_* or gmlp_* variant)")
    parser.add_argument("overrides", nargs="*", help="section.key=value, e.g. model.img_size=64 optim.lr=1e-4")
    parser.add_argument("--model", help="use this variant, e.g. mixer_b16 or resmlp_12 (its default dimensions) "
                                        "instead of the preset's model")
    parser.add_argument("--keep-head", action="store_true", help="load the checkpoint's head too (same classes)")
    parser.add_argument("--run-dir", help="run folder (default: train.out_dir/<run_name or preset>_finetune)")
    args = parser.parse_intermixed_args(argv)  # options may follow the overrides

    state = read_weights(args.weights)
    if args.model:
        tree = {**load_preset(args.preset), "model": {"name": args.model}}
        cfg = build_config(tree, args.overrides)
        cfg.preset = args.preset
    else:
        cfg = build_config(args.preset, args.overrides)
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(cfg, "_finetune")

    def start_from_weights(exp, path, fabric) -> str:
        report = load_pretrained(exp.model, state, new_head=not args.keep_head)
        adapted = ", ".join(filter(None, [report["resized"] and f"token mixing resized {report['resized']}",
                                          report["new_head"] and "new head"]))
        return f" from {args.weights} ({adapted or 'loaded as is'})"

    return train_and_report(cfg, run_dir, reuse=bool(args.run_dir), prepare=start_from_weights)
