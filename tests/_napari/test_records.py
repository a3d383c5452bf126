"""The heatmap record: round trips, metadata written by earlier versions, and what is no heatmap."""

from __future__ import annotations

import json

import numpy as np
import pytest
from napari.layers import Image, Labels

from napari_gradcam._napari.annotations.session_io import _heatmap_layer
from napari_gradcam._napari.records import (
    METADATA_KEY,
    PER_TILE,
    HeatmapRecord,
    TileCounts,
    is_gradcam_layer,
    is_heatmap,
)
from napari_gradcam._napari.regions import Box
from napari_gradcam.core.settings import ExplainSettings
from napari_gradcam.review.session import (
    ImageRef,
    SavedHeatmap,
    Session,
    load_session,
    save_session,
)

FIRST_RELEASE = {
    "model": "demo",
    "weights": None,
    "layer": "features.14",
    "method": "gradcam",
    "target_index": 1,
    "target_name": "stroma",
    "score": 2.5,
    "probability": 0.75,
    "stride": [16.0, 16.0],
    "origin": [32.0, 48.0],
    "image_layer": "slide",
    "region": "rectangle 0",
    "box": [32, 48, 160, 240],
    "slice": [],
    "pyramid_level": 1,
}
"""A heatmap's facts as the first release wrote them (no TTA, precision or tile size)."""
FIRST_TILED = {
    **{k: v for k, v in FIRST_RELEASE.items() if k not in ("target_index", "score", "probability")},
    "target_name": PER_TILE,
    "tiles": {"total": 12, "explained": 9, "skipped": 3, "overlap": 0.5},
    "normalisation": "one for the whole region (raw map over [min, max])",
}


def plain_record(**changes) -> HeatmapRecord:
    target = changes.get("target_name", "tissue")
    fields = {
        "spec": "model.pt",
        "weights": "w.pt",
        "settings": ExplainSettings(
            "scorecam", "4", None if target == PER_TILE else target, tta=True, bfloat16=True
        ),
        "target_name": "tissue",
        "stride": (4.0, 4.0),
        "origin": (16.0, 40.0),
        "image_layer": "tile",
        "box": Box(16, 40, 64, 96, "rectangle 1"),
        "target_index": 1,
        "score": 0.5,
        "probability": 0.6,
        "slice_index": (2,),
        "level": 1,
    }
    return HeatmapRecord(**{**fields, **changes})


@pytest.mark.parametrize(
    "record",
    [
        plain_record(),
        plain_record(
            target_name=PER_TILE,
            target_index=None,
            score=None,
            probability=None,
            tiles=TileCounts(12, 9, 0.5, (96.0, 96.0)),
            normalisation="one for the region",
        ),
    ],
    ids=["region", "tiled"],
)
def test_a_record_survives_layer_metadata_and_json(record, tmp_path):
    assert HeatmapRecord.from_facts(record.to_facts()) == record
    layer = Image(np.zeros((12, 14), np.float32), metadata=record.to_metadata())
    assert HeatmapRecord.of(layer) == record and is_heatmap(layer)
    saved = SavedHeatmap("map", np.zeros((12, 14), np.float32), record.to_facts())
    save_session(tmp_path / "review", Session(ImageRef("tile"), [saved]))
    (loaded,) = load_session(tmp_path / "review").heatmaps
    assert HeatmapRecord.from_facts(loaded.metadata) == record  # lists in JSON, tuples here


def test_the_metadata_keys_stay_those_earlier_versions_wrote():
    facts = plain_record().to_facts()
    assert list(facts) == [
        "model",
        "weights",
        "layer",
        "method",
        "tta",
        "bfloat16",
        "target_index",
        "target_name",
        "score",
        "probability",
        "stride",
        "origin",
        "image_layer",
        "region",
        "box",
        "slice",
        "pyramid_level",
    ]
    assert facts["box"] == (16, 40, 64, 96) and facts["region"] == "rectangle 1"


def test_metadata_of_the_first_release_is_read_and_written_back_unchanged():
    record = HeatmapRecord.from_facts(FIRST_RELEASE)
    assert (record.spec, record.settings.target, record.target_index) == ("demo", "stroma", 1)
    assert record.stride == (16.0, 16.0) and record.origin == (32.0, 48.0)
    assert record.box == Box(32, 48, 160, 240, "rectangle 0") and record.level == 1
    assert not record.settings.tta and not record.settings.bfloat16 and record.tiles is None
    written = json.loads(json.dumps(record.to_facts()))  # as a session stores it
    assert {key: written[key] for key in FIRST_RELEASE} == FIRST_RELEASE
    tiled = HeatmapRecord.from_facts(FIRST_TILED)
    assert tiled.settings.target is None and tiled.tiles == TileCounts(12, 9, 0.5, None)
    assert tiled.to_facts()["tiles"] == FIRST_TILED["tiles"]


def test_keys_a_version_does_not_know_are_kept():
    facts = {**FIRST_RELEASE, "reviewed_by": "pathologist", "layer": None}
    record = HeatmapRecord.from_facts(facts)
    assert record.extra == {"reviewed_by": "pathologist"} and record.settings.layer is None
    assert record.to_facts()["reviewed_by"] == "pathologist"


def test_a_review_saved_by_the_first_release_reopens_on_a_renamed_image(tmp_path):
    cam = np.arange(8 * 12, dtype=np.float32).reshape(8, 12)
    session = Session(ImageRef("slide"), [SavedHeatmap("old map", cam, FIRST_RELEASE)])
    save_session(tmp_path / "old", session)
    (saved,) = load_session(tmp_path / "old").heatmaps
    image = Image(np.zeros((200, 300), np.uint8), name="slide (2)", scale=(0.5, 0.5))
    layer = _heatmap_layer(saved, image)
    record = HeatmapRecord.of(layer)
    assert record.image_layer == "slide (2)" and record.target_name == "stroma"
    np.testing.assert_allclose(layer.scale, (8.0, 8.0))  # 16 px cells on a 0.5 µm/px image
    np.testing.assert_allclose(layer.translate, (0.5 * (32 + 7.5), 0.5 * (48 + 7.5)))


def test_a_saved_heatmap_without_its_placement_is_refused_with_its_name(tmp_path):
    facts = {k: v for k, v in FIRST_RELEASE.items() if k != "stride"}
    saved = SavedHeatmap("broken map", np.zeros((2, 2), np.float32), facts)
    with pytest.raises(ValueError, match=r"'broken map'.*lacks stride"):
        _heatmap_layer(saved, Image(np.zeros((8, 8), np.uint8)))


@pytest.mark.parametrize(
    "layer",
    [
        Image(np.zeros((4, 4), np.float32)),
        Image(np.zeros((4, 4), np.float32), metadata={METADATA_KEY: {"running": True}}),
        Image(np.zeros((4, 4), np.float32), metadata={METADATA_KEY: {**FIRST_RELEASE, "box": 3}}),
        Labels(np.zeros((4, 4), np.uint8), metadata={METADATA_KEY: FIRST_RELEASE}),
    ],
    ids=["plain image", "still filling in", "malformed", "not an image"],
)
def test_what_is_not_a_heatmap(layer):
    assert HeatmapRecord.of(layer) is None and not is_heatmap(layer)
    assert is_gradcam_layer(layer) == (METADATA_KEY in layer.metadata)


def test_a_record_names_what_is_missing():
    with pytest.raises(ValueError, match="lacks stride, origin"):
        HeatmapRecord.from_facts({k: v for k, v in FIRST_RELEASE.items() if k[0] not in "so"})


def test_the_placed_map_carries_the_records_placement():
    record = plain_record()
    placed = record.placed(np.ones((3, 4), np.float32))
    assert placed.stride == (4.0, 4.0) and placed.origin == (16.0, 40.0)
    assert placed.cam.shape == (3, 4)
