import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_gradcam.core.regions.geojson import Annotation
from napari_gradcam.core.regions.polygons import Polygon
from napari_gradcam.review.session import (
    ImageRef,
    SavedHeatmap,
    Session,
    load_session,
    save_session,
)

SQUARE = np.array([[10.0, 20.0], [10.0, 30.0], [15.0, 30.0], [15.0, 20.0]])


def make_session(n_heatmaps: int = 2) -> Session:
    heatmaps = [
        SavedHeatmap(
            f"map {i}",
            np.arange(12, dtype=np.float32).reshape(3, 4) * (i + 1),
            {"stride": (8.0, 8.0), "origin": (0, np.float64(16)), "method": "gradcam"},
            {"opacity": 0.5, "colormap": "turbo"},
        )
        for i in range(n_heatmaps)
    ]
    annotation = Annotation((Polygon(SQUARE),), "suspicious", (255, 0, 255), "look", {"mean": 0.5})
    return Session(
        ImageRef("H&E", sample=("napari-gradcam", "he")),
        heatmaps,
        [annotation],
        {"suspicious": [255, 0, 255], "necrosis": [1, 2, 3]},
        "my annotations",
    )


@pytest.mark.parametrize("suffix", [".npy", ".tif"])
def test_a_review_reads_back_as_saved(tmp_path, suffix):
    session = make_session()
    index = save_session(tmp_path / "review", session, suffix=suffix)
    assert index.name == "session.json"
    loaded = load_session(tmp_path / "review")
    assert loaded.image == session.image
    assert [h.name for h in loaded.heatmaps] == ["map 0", "map 1"]
    np.testing.assert_array_equal(loaded.heatmaps[1].cam, session.heatmaps[1].cam)
    assert loaded.heatmaps[0].metadata == {
        "stride": [8.0, 8.0],
        "origin": [0, 16.0],
        "method": "gradcam",
    }
    assert loaded.heatmaps[0].display == {"opacity": 0.5, "colormap": "turbo"}
    (annotation,) = loaded.annotations
    assert (annotation.label, annotation.note, annotation.id) == (
        "suspicious",
        "look",
        session.annotations[0].id,
    )
    np.testing.assert_allclose(annotation.polygons[0].exterior, SQUARE)
    assert loaded.labels == session.labels and loaded.annotations_name == "my annotations"
    assert sorted(p.name for p in (tmp_path / "review").iterdir()) == sorted(
        [
            "session.json",
            "annotations.geojson",
            "heatmap-00.json",
            "heatmap-01.json",
            f"heatmap-00{suffix}",
            f"heatmap-01{suffix}",
        ]
    )


def test_saving_never_silently_replaces_a_review(tmp_path):
    save_session(tmp_path, make_session())
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(FileExistsError, match="already holds a review"):
        save_session(tmp_path, make_session(1))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    save_session(tmp_path, make_session(1), overwrite=True)
    assert not (tmp_path / "heatmap-01.npy").exists()
    assert len(load_session(tmp_path).heatmaps) == 1


def test_an_unrelated_file_in_the_way_is_not_replaced(tmp_path):
    (tmp_path / "annotations.geojson").write_text("precious")
    with pytest.raises(FileExistsError):
        save_session(tmp_path, make_session())
    assert (tmp_path / "annotations.geojson").read_text() == "precious"


def test_damaged_or_foreign_folders_are_refused_clearly(tmp_path):
    with pytest.raises(ValueError, match=r"session\.json is missing"):
        load_session(tmp_path)
    (tmp_path / "session.json").write_text("{")
    with pytest.raises(ValueError, match="damaged"):
        load_session(tmp_path)
    (tmp_path / "session.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a napari-gradcam review"):
        load_session(tmp_path)
    folder = tmp_path / "newer"
    save_session(folder, make_session())
    index = json.loads((folder / "session.json").read_text())
    (folder / "session.json").write_text(json.dumps({**index, "version": 99}))
    with pytest.raises(ValueError, match="newer napari-gradcam"):
        load_session(folder)
    (folder / "session.json").write_text(json.dumps(index))
    (folder / "heatmap-01.npy").unlink()
    with pytest.raises(ValueError, match="a heatmap of the review cannot be read"):
        load_session(folder)
    with pytest.raises(ValueError, match=r"\.npy or \.tif"):
        save_session(tmp_path / "x", make_session(), suffix=".png")


SESSION_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=20,
)
SESSION_INDEXES = SESSION_VALUES | st.fixed_dictionaries(
    {"format": st.just("napari-gradcam review")},
    optional={
        key: SESSION_VALUES
        for key in ("version", "image", "heatmaps", "labels", "annotations", "annotations_name")
    },
)


@pytest.mark.slow  # a long fuzz: hundreds of random documents
@settings(max_examples=200, deadline=None)
@given(SESSION_INDEXES)
def test_any_session_index_opens_or_says_what_is_wrong(index):
    with tempfile.TemporaryDirectory() as folder:
        save_session(Path(folder), make_session())
        (Path(folder) / "session.json").write_text(json.dumps(index))
        try:
            load_session(folder)
        except ValueError as err:
            assert str(err)
