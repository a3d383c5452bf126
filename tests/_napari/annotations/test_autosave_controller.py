"""The annotations dock autosaves its review and offers to recover it."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import shapely

from napari_gradcam._napari.annotations.autosave_controller import AUTOSAVE_MS
from napari_gradcam._napari.annotations.widget import AnnotationWidget
from napari_gradcam.review.autosave import autosave_path, content_key, read_autosave
from tests._napari.annotations.autosave_crash import crash_image, triangle

ROOT = Path(__file__).resolve().parents[3]
WAIT_MS = AUTOSAVE_MS + 10_000


def world(shapes, index: int) -> np.ndarray:
    return np.array([shapes.data_to_world(vertex) for vertex in shapes.data[index]])


def annotated(make_napari_viewer, image: np.ndarray, **image_kwargs):
    viewer = make_napari_viewer()
    viewer.add_image(image, name="tile", **image_kwargs)
    dock = AnnotationWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Grad-CAM annotations")
    return viewer, dock


def draw_two(viewer, dock, qtbot):
    shapes = viewer.add_shapes([triangle(5, 5), triangle(30, 40)], shape_type="polygon")
    dock.annotations.value = shapes
    shapes.selected_data = {1}
    dock.label.value = "artefact"
    dock.set_note("a fold")
    return shapes


def test_edits_are_autosaved_within_the_window(make_napari_viewer, qtbot):
    viewer, dock = annotated(make_napari_viewer, crash_image())
    shapes = draw_two(viewer, dock, qtbot)
    key = content_key(crash_image())
    qtbot.waitUntil(lambda: read_autosave(key) is not None, timeout=WAIT_MS)
    saved = read_autosave(key)
    assert [(a.label, a.note) for a in saved.annotations] == [
        ("unclear", ""),
        ("artefact", "a fold"),
    ]
    shapes.data = shapes.data[:1]
    qtbot.waitUntil(lambda: len(read_autosave(key).annotations) == 1, timeout=WAIT_MS)
    assert not dock.autosave.offering


def test_a_killed_session_loses_at_most_the_last_window(autosave_folder):
    done = subprocess.run(
        [sys.executable, "-m", "tests._napari.annotations.autosave_crash", str(autosave_folder)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=600,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-3000:]
    saved = read_autosave(content_key(crash_image()))
    assert len(saved.annotations) == 2
    assert saved.annotations[1].note == "kept after the crash"
    assert [p.name for p in autosave_folder.iterdir()] == [autosave_path(saved.key).name]


def test_recovery_restores_shapes_labels_notes_and_placement(make_napari_viewer, qtbot):
    placement = {"scale": (0.5, 2.0), "translate": (10.0, -20.0)}
    viewer, dock = annotated(make_napari_viewer, crash_image(), **placement)
    original = draw_two(viewer, dock, qtbot)
    expected = [world(original, index) for index in range(2)]
    key = content_key(crash_image())
    qtbot.waitUntil(lambda: read_autosave(key) is not None, timeout=WAIT_MS)

    viewer, dock = annotated(make_napari_viewer, crash_image(), **placement)
    assert dock.autosave.offering
    assert dock.autosave.message.value.startswith("Recover 2 annotations autosaved at ")
    dock.autosave.recover_button.clicked.emit()
    shapes = dock.shapes
    assert shapes is not None and not dock.autosave.offering
    for index, vertices in enumerate(expected):  # same places; rings may be re-oriented
        recovered = shapely.Polygon(world(shapes, index))
        assert recovered.equals_exact(shapely.Polygon(vertices), 1e-6) or recovered.equals(
            shapely.Polygon(vertices)
        )
    assert list(shapes.features["label"]) == ["unclear", "artefact"]
    assert list(shapes.features["note"]) == ["", "a fold"]


def test_discard_removes_the_autosave_and_the_prompt(make_napari_viewer, qtbot):
    viewer, dock = annotated(make_napari_viewer, crash_image())
    draw_two(viewer, dock, qtbot)
    key = content_key(crash_image())
    qtbot.waitUntil(lambda: read_autosave(key) is not None, timeout=WAIT_MS)

    viewer, dock = annotated(make_napari_viewer, crash_image())
    other = viewer.add_image(crash_image()[::-1], name="other")
    assert dock.autosave.offering
    dock.autosave.discard_button.clicked.emit()
    assert read_autosave(key) is None
    assert not dock.autosave.offering
    assert other.name in viewer.layers


def test_an_unreadable_autosave_is_set_aside_and_named_in_the_dock(
    make_napari_viewer, autosave_folder
):
    key = content_key(crash_image())
    autosave_path(key).parent.mkdir(parents=True)
    autosave_path(key).write_text('{"format": "napari-gradcam autosave", "annota', "utf-8")
    viewer, dock = annotated(make_napari_viewer, crash_image())
    (moved,) = autosave_folder.glob(f"{key}.unreadable-*.json")
    assert not dock.autosave.offering
    assert moved.name in dock.status.value and "could not be read" in dock.status.value
    shapes = viewer.add_shapes([triangle(5, 5)], shape_type="polygon")
    dock.annotations.value = shapes
    dock.autosave.save_now()
    assert len(read_autosave(key).annotations) == 1
    assert moved.read_text("utf-8").endswith('"annota')


def test_a_partial_autosave_says_n_of_m_and_keeps_the_original_aside(
    make_napari_viewer, qtbot, autosave_folder
):
    viewer, dock = annotated(make_napari_viewer, crash_image())
    draw_two(viewer, dock, qtbot)
    dock.shapes.add([triangle(40, 10), triangle(20, 60)], shape_type="polygon")
    path = dock.autosave.save_now()
    data = json.loads(path.read_text("utf-8"))
    data["annotations"]["features"][1]["geometry"]["coordinates"] = [[["x", 1]]]
    original = json.dumps(data)
    path.write_text(original, "utf-8")

    viewer, dock = annotated(make_napari_viewer, crash_image())
    assert dock.autosave.message.value.startswith("Recover 3 of 4 annotations autosaved at ")
    dock.autosave.recover_button.clicked.emit()
    (aside,) = autosave_folder.glob(f"{path.stem}.partial-*.json")
    assert aside.read_text("utf-8") == original
    assert "3 of 4 autosaved annotations could be read" in dock.status.value
    assert aside.name in dock.status.value
    assert len(dock.shapes.data) == 3 and len(read_autosave(path.stem).annotations) == 3


def test_two_windows_on_one_image_never_replace_each_other(make_napari_viewer, qtbot):
    key = content_key(crash_image())
    first_viewer, first = annotated(make_napari_viewer, crash_image())
    draw_two(first_viewer, first, qtbot)
    first.autosave.save_now()

    _viewer, second = annotated(make_napari_viewer, crash_image())
    second.autosave.recover_button.clicked.emit()
    second.shapes.add([triangle(40, 10)], shape_type="polygon")
    assert second.autosave.save_now() == autosave_path(key)

    first.shapes.data = first.shapes.data[:1]
    own = first.autosave.save_now()
    assert own == autosave_path(key, writer=first.autosave.writer)
    assert own.name in first.status.value and "another napari window" in first.status.value
    assert len(read_autosave(key).annotations) == 3
    assert len(read_autosave(key, path=own).annotations) == 1
    second.shapes.add([triangle(20, 60)], shape_type="polygon")
    assert second.autosave.save_now() == autosave_path(key)
    assert len(read_autosave(key).annotations) == 4

    _viewer, third = annotated(make_napari_viewer, crash_image())
    assert third.autosave.message.value.startswith("Recover 4 annotations")
    third.autosave.discard_button.clicked.emit()
    assert third.autosave.message.value.startswith("Recover 1 annotation ")


def test_a_click_and_a_flat_rectangle_are_kept_as_lines(make_napari_viewer):
    viewer, dock = annotated(make_napari_viewer, crash_image())
    click = np.full((4, 2), 20.0)
    flat = np.array([[10.0, 10.0], [10.0, 30.0], [10.0, 30.0], [10.0, 10.0]])
    kinds = ["rectangle", "rectangle", "polygon"]
    shapes = viewer.add_shapes([click, flat, triangle(5, 5)], shape_type=kinds)
    dock.annotations.value = shapes
    dock.autosave.save_now()
    saved = read_autosave(content_key(crash_image())).annotations
    assert [(len(a.polygons), len(a.lines)) for a in saved] == [(0, 1), (0, 1), (1, 0)]
    np.testing.assert_allclose(saved[0].lines[0], click)


def test_an_autosave_damaged_while_open_is_set_aside_not_replaced(
    make_napari_viewer, qtbot, autosave_folder
):
    viewer, dock = annotated(make_napari_viewer, crash_image())
    draw_two(viewer, dock, qtbot)
    path = dock.autosave.save_now()
    path.write_text("{ damaged by something else", "utf-8")
    assert dock.autosave.save_now() == path
    (moved,) = autosave_folder.glob(f"{path.stem}.unreadable-*.json")
    assert moved.read_text("utf-8") == "{ damaged by something else"
    assert moved.name in dock.status.value and len(read_autosave(path.stem).annotations) == 2
