"""What the slide runner writes per slide, each output written whole or not at all.

* ``<stem>.heatmap.zarr``: an OME-Zarr (NGFF 0.5) image of the stitched raw map (float32,
  one cell per model stride) and 2x coarser levels; its coordinate transformations, written
  by ome-zarr-py, place it on the slide in µm (or level-0 pixels), so napari-ome-zarr and
  other OME-Zarr viewers show it in place; this plugin's reader also uses the provenance in
  its ``napari_gradcam`` attribute;
* ``<stem>.tiles.csv``: one row per tile, explained or skipped;
* ``<stem>.tiles.geojson``: the explained tiles as QuPath ``tile`` objects whose
  measurements are the CSV's numbers (QuPath colours and filters tiles by them);
* ``<stem>.overlay.png``: a thumbnail of the slide with the heatmap;
* ``<stem>.json``: the run's summary.

Each is written under a hidden temporary name in the output folder and renamed into place
when complete.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_gradcam.core.image_files import IMAGE_SUFFIXES
from napari_gradcam.core.output_files import (
    check_outputs,
    current_umask,
    finite_or_null,
    fsync_file,
    fsync_folder,
    fsync_tree,
    output_stem,
)
from napari_gradcam.core.regions.placement import heatmap_transform
from napari_gradcam.core.tiling.tile_stats import FACTS
from napari_gradcam.slides.lazy_slide import SLIDE_SUFFIXES

HEATMAP_KEY = "napari_gradcam"
"""Attribute of a heatmap zarr holding its placement and provenance."""

SLIDE_NAME_SUFFIXES = tuple(sorted({*SLIDE_SUFFIXES, *IMAGE_SUFFIXES}, key=len, reverse=True))
"""Suffixes dropped from a slide's name to name its outputs, longest first."""

CHUNK = 256
AXES = ("y", "x")
CSV_COLUMNS = (
    "tile",
    "status",
    "y0",
    "x0",
    "y1",
    "x1",
    "tissue_fraction",
    "class",
    *FACTS,
    "target",
)
"""Columns of the per-tile CSV; boxes are in level-0 pixels, ``status`` is ``explained``,
``skipped`` (background) or ``outside region`` (an output region's target does not reach the
tile); ``class`` is the predicted class (blank for an embedding model), ``target`` what the
tile's map explains (a class, or the target in words) and ``score`` its score (a similarity
for a prompt or a region likeness)."""


@dataclass(frozen=True)
class SlideOutputs:
    """The output paths of one slide."""

    heatmap: Path
    tiles: Path
    overlay: Path
    summary: Path
    qupath: Path

    @classmethod
    def for_slide(cls, slide: str | Path, out: Path, target: str = "") -> SlideOutputs:
        """Outputs named after the slide's file or folder name, less a slide suffix, in ``out``.

        ``target`` (a slug such as ``prompt-dense-nuclei``) follows the name when the target is
        not a single class, so the files say what was explained.
        """
        stem = output_stem(Path(slide), SLIDE_NAME_SUFFIXES, "slide")
        stem += f".{target}" if target else ""
        return cls(
            out / f"{stem}.heatmap.zarr",
            out / f"{stem}.tiles.csv",
            out / f"{stem}.overlay.png",
            out / f"{stem}.json",
            out / f"{stem}.tiles.geojson",
        )

    def paths(self) -> list[Path]:
        """All output paths."""
        return [self.heatmap, self.tiles, self.overlay, self.summary, self.qupath]


def heatmap_placement(
    stride: tuple[float, float], origin: tuple[float, float], mpp: float | None
) -> dict[str, Any]:
    """A map's ``placement`` attribute: on the slide in level-0 pixels, and in µm when known."""
    scale, translate = heatmap_transform(stride, origin)
    placement = {"pixel": {"scale": list(scale), "translate": list(translate)}}
    if mpp is not None:
        scale, translate = heatmap_transform(stride, origin, (mpp, mpp), (0.0, 0.0))
        placement["micrometer"] = {"scale": list(scale), "translate": list(translate)}
    return placement


def plan_slide_outputs(
    slides: list[Path], out: Path, overwrite: bool, target: str = ""
) -> list[SlideOutputs]:
    """Outputs per slide, named with ``target`` as in :meth:`SlideOutputs.for_slide`.

    Refuses inputs as outputs, clashes and (unasked) overwrites.
    """
    plans = [SlideOutputs.for_slide(slide, out, target) for slide in slides]
    check_outputs([plan.paths() for plan in plans], "slides", overwrite, slides)
    return plans


class HeatmapStore:
    """A zarr group written in a temporary folder and renamed into place by :meth:`publish`.

    Parameters
    ----------
    path : Path
        The final ``.zarr`` folder.
    shape : tuple of int
        ``(rows, columns)`` of the full-resolution map.
    """

    def __init__(self, path: Path, shape: tuple[int, int]) -> None:
        import zarr

        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        self.group = zarr.open_group(self.temporary, mode="w")
        chunks = (min(CHUNK, shape[0]), min(CHUNK, shape[1]))
        self.level0 = self.group.create_array(
            "0", shape=shape, chunks=chunks, dtype="float32", fill_value=0.0, dimension_names=AXES
        )

    def publish(self, attrs: dict[str, Any], overwrite: bool = False) -> list[tuple[int, int]]:
        """Add 2x coarser levels and ``attrs``, then move the store into place.

        Returns
        -------
        list of tuple of int
            The shape of every level.
        """
        shapes = self._add_levels()
        attrs = finite_or_null(attrs)  # zarr writes NaN bare, which is not JSON
        self.group.attrs[HEATMAP_KEY] = {**attrs, "levels": [list(s) for s in shapes]}
        write_ngff(self.group, attrs, len(shapes))
        os.chmod(self.temporary, 0o777 & ~current_umask())
        replace_folder(self.temporary, self.path, overwrite)
        return shapes

    def discard(self) -> None:
        """Delete the temporary store."""
        shutil.rmtree(self.temporary, ignore_errors=True)

    def _add_levels(self) -> list[tuple[int, int]]:
        """Average 2 x 2 cells into each coarser level until one chunk holds it."""
        import dask.array as da

        shapes = [tuple(self.level0.shape)]
        previous = da.from_zarr(self.level0)
        while max(previous.shape) > CHUNK and min(previous.shape) >= 2:
            coarser = da.coarsen(np.mean, previous, {0: 2, 1: 2}, trim_excess=True)
            target = self.group.create_array(
                str(len(shapes)),
                shape=coarser.shape,
                chunks=(CHUNK, CHUNK),
                dtype="float32",
                dimension_names=AXES,
            )
            # one dask chunk per zarr chunk: unlocked writes never share a chunk
            aligned = coarser.astype(np.float32).rechunk(target.chunks)
            da.store(aligned, target, lock=False)
            shapes.append(tuple(target.shape))
            previous = da.from_zarr(target)
        return shapes


def write_ngff(group: Any, attrs: dict[str, Any], n_levels: int) -> None:
    """Write OME-NGFF 0.5 ``multiscales`` for the levels with ome-zarr-py (which validates them).

    In µm when the slide's mpp is known, else in level-0 slide pixels. Level ``i`` averages
    ``2**i`` x ``2**i`` cells, so its first cell's centre lies ``(2**i - 1) / 2`` cells further.
    """
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_multiscales_metadata

    unit = "micrometer" if "micrometer" in attrs["placement"] else "pixel"
    scale, translate = (attrs["placement"][unit][key] for key in ("scale", "translate"))
    datasets = [
        {
            "path": str(level),
            "coordinateTransformations": level_transforms(scale, translate, 2**level),
        }
        for level in range(n_levels)
    ]
    axes = [{"name": name, "type": "space"} for name in AXES]
    if unit == "micrometer":
        axes = [{**axis, "unit": unit} for axis in axes]
    name = f"{attrs['slide']} {attrs['method']} heatmap"
    write_multiscales_metadata(group, datasets, fmt=FormatV05(), axes=axes, name=name)


def level_transforms(
    scale: list[float], translate: list[float], factor: int
) -> list[dict[str, Any]]:
    """Scale and translation of a level averaging ``factor`` x ``factor`` level-0 cells."""
    shift = [t + s * (factor - 1) / 2 for t, s in zip(translate, scale, strict=True)]
    return [
        {"type": "scale", "scale": [s * factor for s in scale]},
        {"type": "translation", "translation": shift},
    ]


def replace_folder(source: Path, target: Path, overwrite: bool) -> None:
    """Rename ``source`` to ``target``; an existing ``target`` is replaced only if allowed."""
    fsync_tree(source)  # durable before it is named: a power cut leaves no torn store
    if target.exists():
        if not overwrite:
            raise FileExistsError(f"{target} already exists; pass --overwrite to replace it")
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        os.replace(target, old / target.name)
        os.replace(source, target)
        shutil.rmtree(old, ignore_errors=True)
        return
    os.replace(source, target)


class TileCsvWriter:
    """The per-tile CSV, written row by row to a temporary file and renamed when complete."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".csv", dir=path.parent)
        self.temporary = Path(name)
        self._file = os.fdopen(handle, "w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(CSV_COLUMNS)

    def write(self, rows: list[list[Any]]) -> None:
        """Append rows ordered like :data:`CSV_COLUMNS`."""
        self._writer.writerows(rows)

    def publish(self) -> None:
        """Close the file, flush it to disk and rename it into place."""
        self._file.close()
        os.chmod(self.temporary, 0o666 & ~current_umask())
        fsync_file(self.temporary)
        os.replace(self.temporary, self.path)
        fsync_folder(self.path.parent)

    def discard(self) -> None:
        """Close and delete the temporary file."""
        self._file.close()
        self.temporary.unlink(missing_ok=True)


def save_tile_objects(path: Path, rows: list[list[Any]], overwrite: bool = False) -> None:
    """Write explained tiles' CSV rows (see :data:`CSV_COLUMNS`) as QuPath tile objects."""
    from napari_gradcam.core.regions.qupath_tiles import write_tiles_geojson

    kept = [name for name in CSV_COLUMNS if name not in ("status", "y0", "x0", "y1", "x1")]
    index = {name: i for i, name in enumerate(CSV_COLUMNS)}
    boxes = np.array([[row[index[k]] for k in ("y0", "x0", "y1", "x1")] for row in rows])
    columns = {name: [row[index[name]] for row in rows] for name in kept}
    write_tiles_geojson(path, boxes.reshape(-1, 4), columns, overwrite=overwrite)
