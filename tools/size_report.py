"""List Python files over 400 lines and functions over 50 lines of code (docstrings not counted).

Information, not a gate: a long file that holds one idea is better than several that split it,
so the report never fails the lint. Read each entry as a place to ask "is this still one idea?".
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 50


def long_functions(path: Path) -> list[str]:
    """Names and lengths of the functions in ``path`` longer than the bar."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1 - _docstring_lines(node)
            if length > MAX_FUNCTION_LINES:
                found.append(f"{path}:{node.lineno} {node.name} ({length} lines)")
    return found


def _docstring_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    first = node.body[0]
    is_docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    return first.end_lineno - first.lineno + 1 if is_docstring else 0


def main(roots: list[str]) -> int:
    """Print every file and function over the bar (always returns 0: see the module docstring)."""
    problems = []
    for root in roots:
        for path in sorted(Path(root).rglob("*.py")):
            lines = len(path.read_text().splitlines())
            if lines > MAX_FILE_LINES:
                problems.append(f"{path} ({lines} lines)")
            problems.extend(long_functions(path))
    print("\n".join(problems) or "all files and functions within the bar")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["napari_gradcam", "benchmarks"]))
