"""List module-level functions and classes that share a name across the modules of a package.

Usage: ``python tools/duplicate_names.py [package folder]`` (default ``napari_gradcam``). Every
``def``, ``async def`` and ``class`` at the top level of a module counts, private names too (a
``_number`` in two modules is two ideas under one name, or one idea written twice). Prints one
line per shared name with the modules that define it, and exits 1 when there is any.

Names in :data:`PROTOCOL_NAMES` are left out: each module defines them for the same role.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

PROTOCOL_NAMES = frozenset(
    {
        "__getattr__",  # PEP 562 lazy exports of a package
        "add_parser",  # a CLI subcommand adds its argparse parser
        "run",  # a CLI subcommand or training script runs with its parsed arguments
        "main",  # the entry point of a script run with ``python -m``
    }
)
"""Names every module may define for the same role; not counted as duplicates."""


def module_name(path: Path, root: Path) -> str:
    """Dotted name of the module in ``path`` (a package's ``__init__`` is the package)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def top_level_names(path: Path) -> set[str]:
    """Names of the functions and classes defined at the top level of the module in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {node.name for node in tree.body if isinstance(node, kinds)}


def duplicates(root: Path) -> dict[str, list[str]]:
    """Each name defined in more than one module of the package in ``root``, with those modules."""
    where: dict[str, list[str]] = defaultdict(list)
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        for name in top_level_names(path) - PROTOCOL_NAMES:
            where[name].append(module)
    return {name: modules for name, modules in sorted(where.items()) if len(modules) > 1}


def main(argv: list[str] | None = None) -> int:
    """Print the shared names of the package and return 1 when there is any."""
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0] if args else "napari_gradcam").resolve()
    found = duplicates(root)
    for name, modules in found.items():
        print(f"{name}: {', '.join(modules)}")
    print(f"{len(found)} name(s) defined in more than one module of {root.name}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
