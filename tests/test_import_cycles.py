"""tools/import_cycles.py finds cycles among a package's modules, typing-only ones on request."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

TOOL = Path(__file__).parents[1] / "tools" / "import_cycles.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("import_cycles", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


def test_cycles_through_deferred_relative_and_typing_imports(tool, tmp_path, capsys):
    package = write_package(
        tmp_path,
        {
            "a.py": "from pkg.b import thing\n",
            "b.py": "def thing():\n    from .sub import c\n",
            "sub/__init__.py": "",
            "sub/c.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import a\n"
            ),
            "d.py": "import pkg.a\n",
        },
    )
    assert tool.main([str(package)]) == 0  # the way back to a only exists for type checkers
    assert tool.main(["--typing", str(package)]) == 1
    out = capsys.readouterr().out
    assert "cycle: pkg.a <-> pkg.b <-> pkg.sub.c\n1 import cycle(s)" in out
    assert out.count("cycle: ") == 1  # d imports a, but nothing imports d


def test_the_package_has_no_import_cycle(tool):
    assert tool.main(["--typing", str(TOOL.parents[1] / "napari_gradcam")]) == 0
