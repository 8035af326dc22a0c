"""`allmlp models`: a table of registered models, their parameter counts and input sizes."""

from __future__ import annotations

from .common import parser


def main(argv: list[str]) -> int:
    """List registered models (parameters counted with default arguments, on the meta device: no memory)."""
    import torch
    from rich.console import Console
    from rich.table import Table

    from ..models import count_parameters, create_model, list_models, model_info

    command = parser("models", "List registered models (parameters counted with default arguments).")
    command.add_argument("--task", choices=["image", "text", "gbm"], help="only models of this task")
    args = command.parse_args(argv)
    table = Table("name", "task", "parameters", "input size")
    for name in list_models(args.task):
        info = model_info(name)
        with torch.device("meta"):
            params = count_parameters(create_model(name))
        size = "x".join(map(str, info["input_size"])) if info["input_size"] else "-"
        table.add_row(name, info["task"], f"{params:,}", size)
    Console().print(table)
    return 0
