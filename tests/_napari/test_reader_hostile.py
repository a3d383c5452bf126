"""The napari reader against hostile files: a terapixel level is refused before napari gets
it, and a heatmap store with a missing or malformed attribute is named, not a traceback."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from napari_gradcam._napari.reader import get_slide_reader, read_heatmap, read_slide
from napari_gradcam.slides.outputs import HEATMAP_KEY, HeatmapStore
from tests.hostile_files import write_declared_pyramid, write_declared_tiff


@pytest.fixture(autouse=True)
def no_cap_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NAPARI_GRADCAM_MAX_PIXELS", raising=False)


def test_a_terapixel_single_level_is_refused_before_napari_gets_it(tmp_path: Path) -> None:
    huge = write_declared_tiff(tmp_path / "huge.tif", 1_000_000, tile=4096)
    assert get_slide_reader(str(huge)) is read_slide
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"huge.tif's coarsest level \(0\)") as caught:
        read_slide(str(huge))
    assert time.perf_counter() - start < 10
    assert tracemalloc.get_traced_memory()[1] < 100 * 2**20
    tracemalloc.stop()
    message = str(caught.value)
    assert "1,000,000 x 1,000,000 pixels" in message and "vips tiffsave" in message
    assert "NAPARI_GRADCAM_MAX_PIXELS" in message


def test_a_terapixel_pyramid_with_a_small_level_opens_lazily(tmp_path: Path) -> None:
    huge = write_declared_pyramid(tmp_path / "pyramid.tif", 1_000_000, 1_954)
    ((levels, kwargs, _),) = read_slide(str(huge))
    assert kwargs["multiscale"]
    assert [level.shape for level in levels] == [(1_000_000, 1_000_000, 3), (1_954, 1_954, 3)]


def test_the_cap_comes_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    tiff = write_declared_tiff(tmp_path / "big.tif", 3_000, tile=256)
    monkeypatch.setenv("NAPARI_GRADCAM_MAX_PIXELS", "1000000")
    with pytest.raises(ValueError, match="over the limit of 1,000,000 pixels"):
        read_slide(str(tiff))
    monkeypatch.setenv("NAPARI_GRADCAM_MAX_PIXELS", "9000000")
    ((data, kwargs, _),) = read_slide(str(tiff))
    assert data.shape == (3_000, 3_000, 3) and not kwargs["multiscale"]


def valid_facts() -> dict[str, Any]:
    return {
        "kind": "heatmap",
        "slide": "scan.svs",
        "method": "gradcam",
        "stride": [8.0, 8.0],
        "origin": [0.0, 0.0],
        "placement": {"pixel": {"scale": [8.0, 8.0], "translate": [3.5, 3.5]}},
        "contrast_limits": [0.0, 2.0],
        "mpp": None,
    }


def write_store(path: Path, facts: dict[str, Any]) -> Path:
    store = HeatmapStore(path, (300, 40))
    store.level0[:] = np.ones((300, 40), np.float32)
    store.publish(valid_facts())
    zarr.open_group(path, mode="r+").attrs[HEATMAP_KEY] = {
        **facts,
        "levels": zarr.open_group(path, mode="r").attrs[HEATMAP_KEY]["levels"],
    }
    return path


def test_a_valid_store_opens_placed_and_coloured(tmp_path: Path) -> None:
    path = write_store(tmp_path / "scan.heatmap.zarr", valid_facts())
    ((levels, kwargs, _),) = get_slide_reader(str(path))(str(path))
    assert [level.shape for level in levels] == [(300, 40), (150, 20)]
    assert kwargs["contrast_limits"] == (0.0, 2.0)
    assert kwargs["scale"] == (8.0, 8.0) and kwargs["translate"] == (3.5, 3.5)


def without(key: str) -> dict[str, Any]:
    facts = valid_facts()
    del facts[key]
    return facts


MALFORMED = {
    "no placement": (without("placement"), "napari_gradcam.placement is missing"),
    "limits as text": (
        {**valid_facts(), "contrast_limits": "0,1"},
        "napari_gradcam.contrast_limits is str '0,1', not two numbers",
    ),
    "limits reversed": (
        {**valid_facts(), "contrast_limits": [1, 0]},
        "low must be below high",
    ),
    "no method": (without("method"), "napari_gradcam.method is missing"),
    "placement in inches": (
        {**valid_facts(), "placement": {"inch": {}}},
        "not a mapping with 'micrometer' or 'pixel'",
    ),
    "scale of zero": (
        {**valid_facts(), "placement": {"pixel": {"scale": [0, 8], "translate": [0, 0]}}},
        "placement.pixel.scale is not two positive numbers",
    ),
    "translate as text": (
        {**valid_facts(), "placement": {"pixel": {"scale": [8, 8], "translate": "0 0"}}},
        "placement.pixel.translate is not two numbers",
    ),
    "signed as text": ({**valid_facts(), "signed": "yes"}, "napari_gradcam.signed is str"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_store_names_the_attribute_and_what_to_do(tmp_path: Path, case: str) -> None:
    facts, expected = MALFORMED[case]
    path = write_store(tmp_path / "scan.heatmap.zarr", facts)
    with pytest.raises(ValueError) as caught:
        read_heatmap(str(path))
    message = str(caught.value)
    assert expected in message
    assert message.startswith("scan.heatmap.zarr cannot be opened as a heatmap")
    assert "--overwrite" in message


def test_levels_that_disagree_with_the_arrays_are_named(tmp_path: Path) -> None:
    path = write_store(tmp_path / "scan.heatmap.zarr", valid_facts())
    group = zarr.open_group(path, mode="r+")
    group.attrs[HEATMAP_KEY] = {**group.attrs[HEATMAP_KEY], "levels": [[300, 40], [9, 9], [1, 1]]}
    with pytest.raises(ValueError, match=r"gives level 1 the shape \[9, 9\], but its array is"):
        read_heatmap(str(path))
    group.attrs[HEATMAP_KEY] = {**group.attrs[HEATMAP_KEY], "levels": [[300, 40], [150, 20], [1]]}
    with pytest.raises(ValueError, match="lists level 2, but the store has no array '2'"):
        read_heatmap(str(path))
    group.attrs[HEATMAP_KEY] = "gradcam"
    with pytest.raises(ValueError, match="its attribute napari_gradcam is str 'gradcam'"):
        read_heatmap(str(path))


def test_napari_reports_the_refusal_and_adds_no_layer(make_napari_viewer, tmp_path: Path) -> None:
    huge = write_declared_tiff(tmp_path / "huge.tif", 1_000_000, tile=4096)
    store = write_store(tmp_path / "scan.heatmap.zarr", without("placement"))
    viewer = make_napari_viewer()
    for path, expected in [(huge, "vips tiffsave"), (store, "napari_gradcam.placement")]:
        with pytest.raises(ValueError, match=expected):
            viewer.open(str(path), plugin="napari-gradcam")
    assert len(viewer.layers) == 0
