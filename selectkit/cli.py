"""``selectkit``: inspect the installation (``selectkit list``: every selector, its distribution, version)."""

from __future__ import annotations

import argparse
import sys

from selectkit import registry
from selectkit.errors import SelectkitError


def _list(args: argparse.Namespace) -> int:
    table = registry.entries()
    if not table:
        print("no selectors installed", file=sys.stderr)
        return 1
    rows = [("selector", "distribution", "version", "target")]
    rows += [(e.name, e.distribution, e.version, e.target) for e in table.values()]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def _show(args: argparse.Namespace) -> int:
    cls = registry.get(args.name)
    doc = (cls.__doc__ or "").strip()
    print(f"{args.name}: {cls.__module__}.{cls.__qualname__}")
    print(f"requires: {', '.join(sorted(cls.requires)) if isinstance(cls.requires, frozenset) else 'depends on parameters'}")
    print(f"parameters: {', '.join(cls._param_names()) or 'none'}")
    if doc:
        print()
        print(doc)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``selectkit`` command."""
    parser = argparse.ArgumentParser(prog="selectkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list installed selectors with their distribution and version").set_defaults(func=_list)
    show = sub.add_parser("show", help="describe one selector")
    show.add_argument("name")
    show.set_defaults(func=_show)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SelectkitError as err:
        print(f"selectkit: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
