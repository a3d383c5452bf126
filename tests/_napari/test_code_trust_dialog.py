"""The docks ask before running code a card names: yes runs and is remembered, no runs nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from magicgui.widgets import Container, Label
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication, QMessageBox

from napari_gradcam._napari.code_trust_dialog import DECLINE_BUTTON, TRUST_BUTTON, trust_dialog
from napari_gradcam._napari.jobs import JobHooks, JobRunner
from napari_gradcam.models.code_trust import file_sha256, is_remembered
from napari_gradcam.models.probe import Recipe

TIMEOUT_MS = 30_000
HELPER = """
from pathlib import Path

Path({marker!r}).open("a").write("imported\\n")


def backbone():
    from torch import nn

    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
"""


@pytest.fixture
def recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A recipe whose backbone is ``helper.py:backbone`` beside it; importing it writes a marker."""
    monkeypatch.setenv("NAPARI_GRADCAM_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "helper.py").write_text(HELPER.format(marker=str(tmp_path / "imported")))
    path = tmp_path / "probe.json"
    recipe = {
        "card": {"name": "probe", "classes": ["a", "b"], "input_size": [16, 16]},
        "backbone": {"spec": "helper.py:backbone"},
        "head": {"layers": [4, 2]},
    }
    path.write_text(json.dumps(recipe))
    return path


def imports(recipe: Path) -> int:
    """How many times the recipe's helper.py was imported."""
    marker = recipe.with_name("imported")
    return len(marker.read_text().splitlines()) if marker.exists() else 0


class Dock:
    """A docked widget with a status label, its job runner and what the jobs returned."""

    def __init__(self, viewer) -> None:
        self.status = Label(value="")
        self.widget = Container(widgets=[self.status])
        viewer.window.add_dock_widget(self.widget, name="test")
        self.runner = JobRunner(self.widget.native, "test", status=self.status)
        self.returned: list[object] = []
        self.asked: list[str] = []

    def load(self, recipe: Path, answer: str | None) -> None:
        """Load ``recipe`` in a job; click ``answer`` in the dialog if one is shown."""
        from napari_gradcam.models.loading import load_model

        if answer is not None:
            self._answer(answer, tries=500)
        self.runner.start(lambda: load_model(str(recipe)), hooks=JobHooks(self.returned.append))

    def _answer(self, text: str, tries: int) -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            if tries:
                QTimer.singleShot(20, lambda: self._answer(text, tries - 1))
            return
        self.asked.append(box.informativeText())
        next(button for button in box.buttons() if button.text() == text).click()


@pytest.fixture
def dock(make_napari_viewer) -> Dock:
    return Dock(make_napari_viewer())


def test_accepting_runs_the_job_and_is_remembered_for_that_content(dock, recipe, qtbot):
    dock.load(recipe, TRUST_BUTTON)
    qtbot.waitUntil(lambda: len(dock.returned) == 1, timeout=TIMEOUT_MS)
    assert dock.returned[0].kind == "recipe" and imports(recipe) == 1
    assert len(dock.asked) == 1
    assert "helper.py:backbone" in dock.asked[0]
    assert file_sha256(recipe.with_name("helper.py")) in dock.asked[0]
    assert file_sha256(recipe) in dock.asked[0]
    assert is_remembered(Recipe.read(recipe).code_request())

    dock.load(recipe, None)  # remembered: no question
    qtbot.waitUntil(lambda: len(dock.returned) == 2, timeout=TIMEOUT_MS)
    assert len(dock.asked) == 1 and imports(recipe) == 2

    helper = recipe.with_name("helper.py")
    helper.write_text(helper.read_text() + "\n# changed\n")
    dock.load(recipe, DECLINE_BUTTON)  # changed content: asked again
    qtbot.waitUntil(lambda: dock.status.value.startswith("not run"), timeout=TIMEOUT_MS)
    assert len(dock.asked) == 2 and len(dock.returned) == 2 and imports(recipe) == 2


def test_declining_imports_nothing(dock, recipe, qtbot):
    dock.load(recipe, DECLINE_BUTTON)
    qtbot.waitUntil(lambda: dock.status.value.startswith("not run"), timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: not dock.runner.running, timeout=TIMEOUT_MS)
    assert "probe.json was not trusted" in dock.status.value
    assert dock.returned == [] and imports(recipe) == 0 and len(dock.asked) == 1
    assert not is_remembered(Recipe.read(recipe).code_request())


def test_the_dialog_names_the_code_and_declines_by_default(recipe, qtbot):
    box = trust_dialog(Recipe.read(recipe).code_request())
    qtbot.addWidget(box)
    assert box.defaultButton().text() == DECLINE_BUTTON
    assert box.escapeButton().text() == DECLINE_BUTTON
    assert "probe.json" in box.text() and str(recipe) in box.informativeText()
