"""Every package the code imports is declared in pyproject.toml, not left to arrive transitively."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTIONS = {
    "skimage": "scikit-image",
    "yaml": "pyyaml",
    "openslide": "openslide-python",
    "ome_zarr": "ome-zarr",
    "PIL": "pillow",
    "segmentation_models_pytorch": "segmentation-models-pytorch",
    "open_clip": "open_clip_torch",
}
"""Import names whose distribution is named differently."""


def imported_packages() -> dict[str, set[str]]:
    """Top-level third-party imports of the package, each with the files that import it."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "napari_gradcam").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in (
                    "napari_gradcam",
                    "__future__",
                ):
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    optional = project["optional-dependencies"].values()  # e.g. timm, imported only when used
    names = [*project["dependencies"], *(name for extra in optional for name in extra)]
    return {re.split(r"[<>=!~\[; ]", name, maxsplit=1)[0].lower() for name in names}


def test_every_imported_package_is_a_declared_dependency():
    imports = imported_packages()
    assert {"scipy", "pandas", "imageio", "tqdm"} <= imports.keys()
    missing = {
        name: sorted(files)
        for name, files in imports.items()
        if DISTRIBUTIONS.get(name, name).lower() not in declared()
    }
    assert missing == {}


def test_the_gui_free_parts_import_no_napari_and_no_qt():
    gui = {"napari", "qtpy", "PyQt6", "PyQt5", "PySide6", "magicgui", "superqt", "vispy"}
    gui_free = ("core", "slides", "models", "review", "training")
    found = {
        name: sorted(f for f in files if Path(f).parts[1] in gui_free)
        for name, files in imported_packages().items()
        if name in gui
    }
    assert {name: files for name, files in found.items() if files} == {}
