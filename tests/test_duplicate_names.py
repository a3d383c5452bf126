"""tools/duplicate_names.py finds top-level functions and classes that share a name."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

TOOL = Path(__file__).parents[1] / "tools" / "duplicate_names.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("duplicate_names", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shared_top_level_names_are_listed_and_protocol_names_are_not(tool, tmp_path, capsys):
    package = tmp_path / "pkg"
    files = {
        "__init__.py": "def __getattr__(name):\n    raise AttributeError(name)\n",
        "a.py": "def _number(x):\n    pass\n\nclass Table:\n    pass\n\ndef main():\n    pass\n",
        "sub/__init__.py": "",
        "sub/b.py": "class _number:\n    def Table(self):\n        pass\n\ndef main():\n    pass\n",
        "c.py": "async def _number():\n    pass\n\ndef __getattr__(name):\n    pass\n",
    }
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)

    assert tool.duplicates(package) == {"_number": ["pkg.a", "pkg.c", "pkg.sub.b"]}
    assert tool.main([str(package)]) == 1
    assert "_number: pkg.a, pkg.c, pkg.sub.b" in capsys.readouterr().out


def test_a_package_without_shared_names_passes(tool, tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def one():\n    pass\n")
    (package / "b.py").write_text("def two():\n    pass\n")
    assert tool.main([str(package)]) == 0
