"""`allmlp train PRESET [overrides] [--resume]`: train and save a run folder."""

from __future__ import annotations

from pathlib import Path

from .common import parser, train_and_report

EPILOG = """examples:
  allmlp train fashion_mixer
  allmlp train fashion_mixer model.depth=6 optim.lr=3e-3 train.max_steps=2000
  allmlp train fashion_mixer --resume            # continue runs/fashion_mixer where it stopped
  allmlp train runs/my_run --resume train.max_steps=4000
  allmlp train fashion_mixer train.devices=2 train.strategy=ddp
"""


def main(argv: list[str]) -> int:
    """Train a preset, a YAML file or a run folder's config with overrides; --resume continues a run folder."""
    from ..checkpoint import CONFIG, CheckpointError, check_run_dir
    from ..compat import reject_other_command_words
    from ..config import load_preset
    from ..configure import build_config, load_config
    from ..engine import default_run_dir

    reject_other_command_words(argv)
    command = parser("train", "Train a model from a preset (or a run folder) with section.key=value overrides.",
                     EPILOG)
    command.add_argument("preset", help="preset name (see `allmlp presets`), a YAML file, or a run folder")
    command.add_argument("overrides", nargs="*", help="section.key=value, e.g. optim.lr=1e-3")
    command.add_argument("--resume", action="store_true", help="continue the run folder's last checkpoint")
    command.add_argument("--run-dir", help="run folder (default: train.out_dir/run_name or preset)")
    args = command.parse_intermixed_args(argv)

    source = Path(args.preset)
    if (source / CONFIG).is_file():
        run_dir = Path(args.run_dir) if args.run_dir else source
        cfg = override_loaded(load_config(source / CONFIG), args.overrides)
    else:
        if args.resume and (source.exists() or "/" in args.preset) and source.suffix not in (".yaml", ".yml"):
            raise CheckpointError(f"--resume: run folder not found: {source}")
        load_preset(args.preset)  # an unknown preset is named before any folder is looked at
        cfg = build_config(args.preset, args.overrides)
        run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(cfg)
    if args.resume:
        run_dir = check_run_dir(run_dir)
        if run_dir != source:  # resuming by preset name: the run's own config, with this command's overrides
            cfg = override_loaded(load_config(run_dir / CONFIG), args.overrides)
    return train_and_report(cfg, run_dir, resume=args.resume,
                            reuse=args.resume or bool(args.run_dir) or (source / CONFIG).is_file())


def override_loaded(cfg, overrides: list[str]):
    """Apply command-line overrides on top of a config loaded from a run folder."""
    from ..configure import build_config

    if not overrides:
        return cfg
    tree = cfg.to_dict()
    preset = tree.pop("preset", "")
    out = build_config(tree, overrides)
    out.preset = preset
    return out
