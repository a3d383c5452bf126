"""The public API: every export resolves, ``import napari_gradcam`` stays torch-free, and the
benchmarks use public names only."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import napari_gradcam as ng

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
PUBLIC_MODULES = {"napari_gradcam", "napari_gradcam.data"}
"""What a benchmark may import from the package: the top level and the bundled sample."""


@pytest.mark.parametrize("name", sorted(ng._EXPORTS))
def test_every_export_resolves(name: str) -> None:
    assert getattr(ng, name) is not None


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        ng.nothing_here  # noqa: B018


def test_import_does_not_import_torch() -> None:
    code = "import sys, napari_gradcam; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def _package_imports(path: Path) -> list[str]:
    """The ``napari_gradcam`` modules that a file imports (``import`` and ``from`` forms)."""
    modules = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.append(node.module)
        elif isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
    return [m for m in modules if m.split(".")[0] == "napari_gradcam"]


@pytest.mark.parametrize("path", sorted(BENCHMARKS.glob("*.py")), ids=lambda p: p.name)
def test_benchmarks_import_public_names_only(path: Path) -> None:
    internal = [m for m in _package_imports(path) if m not in PUBLIC_MODULES]
    assert not internal, f"{path.name} imports internal modules {internal}; use napari_gradcam"
