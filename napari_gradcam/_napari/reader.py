"""npe2 reader: whole slides as lazy multiscale layers in microns, and stitched heatmaps in place.

* every scanner format :func:`~napari_gradcam.slides.open_slide` reads (``.svs``, tiled or
  pyramidal ``.tif``/``.tiff`` and OME-TIFF, ``.ndpi``, ``.vms``, ``.vmu``, ``.mrxs``,
  ``.scn``, ``.bif``, ``.svslide``, and DICOM WSI: a ``.dcm`` file or its folder): one RGB (or
  grayscale) image layer, each pyramid level a dask array read tile by tile, with ``scale`` in
  µm per pixel, ``units="micrometer"`` and ``metadata["mpp"]`` (pixels and ``mpp=None`` when
  the file does not say).
* ``<slide>.heatmap.zarr`` written by ``napari-gradcam slide``: the heatmap layer placed on
  the slide (its stored scale and translate), coloured like the widget's heatmaps.

Other files are left to other readers (``None`` is returned for them).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari_gradcam.core.pixel_limit import PYRAMID_ADVICE, check_pixels
from napari_gradcam.slides.lazy_slide import SLIDE_SUFFIXES
from napari_gradcam.slides.outputs import HEATMAP_KEY

LayerDataTuple = tuple[Any, dict[str, Any], str]
MICROMETRE = "micrometer"


def get_slide_reader(path: str | list[str]) -> Callable[[str], list[LayerDataTuple]] | None:
    """Return a reader for a slide or a heatmap store, or ``None`` for other files."""
    if not isinstance(path, str):
        return None
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix == ".zarr":
        return read_heatmap if _is_heatmap(file) else None
    if _is_slide(file):
        return read_slide
    return None


def _is_heatmap(path: Path) -> bool:
    import zarr

    try:
        return HEATMAP_KEY in zarr.open_group(path, mode="r").attrs
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _is_slide(path: Path) -> bool:
    """Whether ``path`` looks like a slide this plugin should open (others go elsewhere)."""
    if path.is_dir():
        return any(path.glob("*.dcm"))
    suffix = path.suffix.lower()
    if suffix not in SLIDE_SUFFIXES:
        return False
    if suffix in (".svs", ".tif", ".tiff"):
        return _is_tiff_slide(path)
    if suffix == ".dcm":
        return path.is_file()
    return _openslide_recognises(path)


def _openslide_recognises(path: Path) -> bool:
    try:
        import openslide
    except ImportError:
        return False
    return openslide.OpenSlide.detect_format(path) is not None


def _is_tiff_slide(path: Path) -> bool:
    """2-D SVS files and TIFFs that are tiled or hold a pyramid (plain images go elsewhere)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tiff:
            series = tiff.series[0]
            large = tiff.is_svs or len(series.levels) > 1 or tiff.pages[0].is_tiled
            return large and series.axes in ("YX", "YXS")
    except (tifffile.TiffFileError, OSError, IndexError):
        return False


def read_slide(path: str) -> list[LayerDataTuple]:
    """Open a slide as a lazy multiscale image layer in microns.

    Raise ``ValueError`` for an unreadable slide, or one whose coarsest level is over the
    pixel cap (:mod:`~napari_gradcam.core.pixel_limit`): napari would read all of it.
    """
    from napari_gradcam.slides import open_slide

    slide = open_slide(path)
    # napari reads the coarsest level whole to show the whole slide
    coarsest = slide.level_shapes[-1]
    what = f"{slide.name}'s coarsest level ({len(slide.levels) - 1}), shown whole by napari,"
    check_pixels(coarsest[:2], what, PYRAMID_ADVICE)
    levels = slide.dask_levels()
    known = slide.mpp is not None
    mpp = slide.mpp if known else 1.0
    kwargs = {
        "name": slide.name,
        "rgb": levels[0].ndim == 3 and levels[0].shape[-1] in (3, 4),
        "multiscale": len(levels) > 1,
        "scale": (mpp, mpp),
        "units": (MICROMETRE if known else "pixel",) * 2,
        "metadata": {
            "mpp": slide.mpp,
            "slide": {
                "path": str(slide.path),
                "mpp_source": slide.mpp_source,
                "backend": slide.backend,
                "downsamples": [list(d) for d in slide.downsamples],
            },
        },
    }
    return [(levels if len(levels) > 1 else levels[0], kwargs, "image")]


def read_heatmap(path: str) -> list[LayerDataTuple]:
    """Open a stitched heatmap where it lies on its slide (µm when the slide's mpp is known).

    Raise ``ValueError``, naming the attribute, when the store lacks one or holds it malformed.
    """
    import dask.array as da

    from napari_gradcam._napari.explain.tiled_layers import clear_low
    from napari_gradcam._napari.mil.layers import diverging
    from napari_gradcam.slides.heatmap_facts import placement_unit, read_heatmap_facts

    group, facts = read_heatmap_facts(path)
    levels = [da.from_zarr(group[str(k)]) for k in range(len(facts["levels"]))]
    unit = placement_unit(facts)
    placement = facts["placement"][unit]
    kwargs = {
        "name": f"{facts['slide']} {facts['method']} heatmap",
        "multiscale": len(levels) > 1,
        "scale": tuple(placement["scale"]),
        "translate": tuple(placement["translate"]),
        "units": (unit, unit),
        "colormap": diverging() if facts.get("signed") else clear_low("turbo"),
        "opacity": 0.5,
        "blending": "translucent",
        "contrast_limits": tuple(facts["contrast_limits"]),
        "interpolation2d": "linear",
        "metadata": {HEATMAP_KEY: facts},
    }
    return [(levels if len(levels) > 1 else levels[0], kwargs, "image")]
