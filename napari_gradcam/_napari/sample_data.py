"""Sample data contributions: the bundled H&E region and scikit-image's IHC tile."""

from __future__ import annotations

from typing import Any

from napari_gradcam.data import HE_MPP, ihc_tile, read_he_region

LayerDataTuple = tuple[Any, dict[str, Any], str]


def he_sample() -> list[LayerDataTuple]:
    """Return the H&E skin region, scaled in microns (about 0.5 µm per pixel)."""
    kwargs = {
        "name": "H&E skin (CMU-1-Small-Region)",
        "rgb": True,
        "scale": (HE_MPP, HE_MPP),
        "units": ("micrometer", "micrometer"),
        "metadata": {"mpp": HE_MPP},
    }
    return [(read_he_region(), kwargs, "image")]


def ihc_sample() -> list[LayerDataTuple]:
    """Return the immunohistochemistry tile (DAB + hematoxylin) from scikit-image."""
    return [(ihc_tile(), {"name": "IHC (scikit-image)", "rgb": True}, "image")]
