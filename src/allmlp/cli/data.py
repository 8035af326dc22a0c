"""`allmlp data fetch NAME` / `allmlp data list`: get data sets into the cache."""

from __future__ import annotations

from .common import parser


def main(argv: list[str]) -> int:
    """Fetch the named data sets (checksums verified), or list them."""
    from ..data import registry

    command = parser("data", "Fetch data sets into the cache (checksums verified) or list them.")
    command.add_argument("action", choices=["fetch", "list"])
    command.add_argument("names", nargs="*", help="data set names (see `allmlp data list`)")
    args = command.parse_args(argv)
    if args.action == "list":
        for name, where in registry.available().items():
            print(f"{name:<16} {where}")
        return 0
    if not args.names:
        command.error("fetch needs at least one data set name")
    for name in args.names:
        print(f"{name}: {registry.fetch(name)}")
    return 0
