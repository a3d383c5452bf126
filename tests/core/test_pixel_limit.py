"""One cap on whole-image reads: from the argument, else the environment, else the default."""

from __future__ import annotations

import pytest

from napari_gradcam.core.pixel_limit import (
    DEFAULT_MAX_PIXELS,
    TooManyPixels,
    check_pixels,
    max_pixels,
    plane_shape,
)


def test_the_cap_comes_from_the_argument_then_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("NAPARI_GRADCAM_MAX_PIXELS", raising=False)
    assert max_pixels() == DEFAULT_MAX_PIXELS
    monkeypatch.setenv("NAPARI_GRADCAM_MAX_PIXELS", "1,000_000")
    assert max_pixels() == 1_000_000
    assert max_pixels(5) == 5


@pytest.mark.parametrize("text", ["many", "0", "-3", "1.5"])
def test_a_bad_environment_value_says_what_to_set(monkeypatch, text: str) -> None:
    monkeypatch.setenv("NAPARI_GRADCAM_MAX_PIXELS", text)
    with pytest.raises(ValueError, match="NAPARI_GRADCAM_MAX_PIXELS"):
        max_pixels()


@pytest.mark.parametrize("value", [0, -1, True, 2.5])
def test_a_bad_argument_is_refused(value) -> None:
    with pytest.raises(ValueError, match="max_pixels must be a positive number"):
        max_pixels(value)


def test_check_pixels_names_size_cap_advice_and_how_to_raise_it() -> None:
    check_pixels((100, 200), "x.png", "tile it", limit=20_000)
    with pytest.raises(TooManyPixels) as caught:
        check_pixels((100, 201), "x.png", "tile it", limit=20_000)
    message = str(caught.value)
    assert "x.png is 100 x 201 pixels (20,100), over the limit of 20,000" in message
    assert "tile it; or raise the limit with --max-pixels or NAPARI_GRADCAM_MAX_PIXELS" in message
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("shape", "plane"),
    [((7, 9), (7, 9)), ((7, 9, 3), (7, 9)), ((2, 7, 9, 4), (14, 9)), ((7, 9, 5), (63, 5))],
)
def test_plane_shape_drops_colour_and_stacks_planes(shape, plane) -> None:
    assert plane_shape(shape) == plane
