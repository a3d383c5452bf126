"""List import cycles among the modules of a package (module-level and deferred imports alike).

Usage: ``python tools/import_cycles.py [--typing] [package folder]`` (default
``napari_gradcam``). Every ``import`` and ``from ... import`` of a module of the package counts,
wherever it stands (deferred imports in functions too); imports under ``if TYPE_CHECKING:`` count
only with ``--typing`` (they never run, but still tie the modules together). Prints one line per
cycle (the strongly connected components with more than one module) and exits 1 when there is any.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def module_name(path: Path, root: Path) -> str:
    """Dotted name of the module in ``path`` (a package's ``__init__`` is the package)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imported(path: Path, name: str, modules: set[str], typing: bool = False) -> set[str]:
    """The package's modules that the module ``name`` in ``path`` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if not typing and _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {module for module in found if module in modules and module != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def main(argv: list[str]) -> int:
    """Print the cycles of the package named in ``argv``; return 1 when there is any."""
    typing = "--typing" in argv
    folders = [arg for arg in argv if arg != "--typing"]
    root = Path(folders[0] if folders else "napari_gradcam").resolve()
    paths = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    modules = set(paths)
    graph = {name: imported(path, name, modules, typing) for name, path in paths.items()}
    found = cycles(graph)
    for component in found:
        sys.stdout.write("cycle: " + " <-> ".join(component) + "\n")
    kind = "with TYPE_CHECKING imports" if typing else "at run time"
    sys.stdout.write(f"{len(found)} import cycle(s) among {len(modules)} modules ({kind})\n")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
