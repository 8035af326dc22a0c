"""`allmlp presets`: the shipped presets and their model."""

from __future__ import annotations

from .common import parser


def main(argv: list[str]) -> int:
    """One line per shipped preset: its name and model."""
    from ..config import load_preset, preset_names

    parser("presets", "List the presets shipped with allmlp.").parse_args(argv)
    for name in preset_names():
        model = load_preset(name).get("model", {}).get("name", "-")
        print(f"{name:<28} {model}")
    return 0
