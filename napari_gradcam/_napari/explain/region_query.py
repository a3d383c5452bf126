"""A region the user points at, turned into a target: "like this region" or "inside this region".

The main thread cuts what the job needs from the layers (:func:`shape_region`,
:func:`labels_region`): a boolean mask in level-0 pixels of the explained image plane, aligned
through both layers' transforms (scale, translate, rotate, shear, affine). The worker then turns
it into a core target: :class:`LikeRegion` embeds the region's pixels once per job
(``embed_region``), :class:`OutputMask` hands each explained crop the part of the mask it holds
(``OutputRegion``). torch is imported only in the worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Image, Labels, Shapes

from napari_gradcam._napari.annotations.shape_coords import (
    apply,
    data_to_pixels,
    shape_polygons,
)
from napari_gradcam._napari.plane import Crop, Plane, plane_sampling, read_crop
from napari_gradcam._napari.regions import Box, snap_box
from napari_gradcam.core.regions.polygons import bounds, polygons_mask
from napari_gradcam.core.targets import LikeEmbedding, OutputRegion

if TYPE_CHECKING:
    from napari_gradcam.core.loaded_model import LoadedModel


@dataclass(frozen=True, eq=False)
class PlaneMask:
    """Pixels of an image plane: ``mask`` covers the level-0 pixels of ``box`` (its bounds)."""

    box: Box
    mask: np.ndarray

    @property
    def area(self) -> int:
        """Number of level-0 pixels inside."""
        return int(np.count_nonzero(self.mask))

    def on_crop(self, crop: Crop, shape: Sequence[int]) -> np.ndarray:
        """The mask on the pixels of ``crop`` (``shape`` (h, w) of its pixels).

        Each crop pixel takes the value of the level-0 pixel nearest its centre.
        """
        axes = []
        for axis in (0, 1):
            step, start = crop.downsample[axis], crop.origin[axis]
            centres = start + np.arange(shape[axis]) * step + (step - 1.0) / 2.0
            axes.append(np.rint(centres).astype(int) - self.box.origin[axis])
        rows, cols = axes
        inside_rows = (rows >= 0) & (rows < self.mask.shape[0])
        inside_cols = (cols >= 0) & (cols < self.mask.shape[1])
        on_crop = np.zeros((len(rows), len(cols)), dtype=bool)
        picked = self.mask[np.ix_(rows[inside_rows], cols[inside_cols])]
        on_crop[np.ix_(inside_rows, inside_cols)] = picked
        return on_crop


@dataclass(frozen=True, eq=False)
class LikeRegion:
    """Explain how much each image (or tile) looks like this region of the plane.

    The region's bounding box is read at the model's resolution and embedded once per job.
    """

    region: PlaneMask
    label: str

    def embed(self, loaded: LoadedModel, plane: Plane) -> LikeEmbedding:
        """The region's embedding (in the worker: one or a few inference forwards)."""
        from napari_gradcam.core.explain.region_embedding import embed_region

        level, resample = plane_sampling(plane, loaded.card.mpp)
        crop = read_crop(plane, self.region.box, level, resample)
        return embed_region(loaded, crop.pixels, label=self.label)


@dataclass(frozen=True, eq=False)
class OutputMask:
    """Explain a dense model's summed logits of ``target_class`` inside this region."""

    target_class: int | str
    region: PlaneMask
    label: str

    def on_crop(self, crop: Crop, where: str) -> OutputRegion:
        """The target of one explained crop; ``ValueError`` naming ``where`` when it misses."""
        mask = self.region.on_crop(crop, crop.pixels.shape[:2])
        if not mask.any():
            raise ValueError(
                f"the output region {self.label!r} lies outside the {where}; explain a region "
                "that holds it (e.g. the whole layer)"
            )
        return OutputRegion(self.target_class, mask, self.label)


RegionTarget = LikeRegion | OutputMask
"""A target the worker finishes from a region of the image."""


def shape_label(shapes: Shapes, index: int) -> str:
    """How a shape is named in targets and layer names: ``"shape 3"`` or ``"tumour, shape 3"``.

    Shapes count from 1; the annotation's label (its ``label`` feature) comes first when set.
    """
    name = f"shape {index + 1}"
    if "label" in shapes.features and index < len(shapes.features):
        label = str(shapes.features["label"].iloc[index]).strip()
        if label and label.lower() != "nan":
            return f"{label}, {name}"
    return name


def shape_region(image: Image, shapes: Shapes, index: int, plane_shape: Sequence[int]) -> PlaneMask:
    """The pixels of ``image``'s plane inside shape ``index`` of ``shapes``, or ``ValueError``.

    The shape goes to the image's level-0 pixels through both layers' transforms; a pixel is
    inside when its centre is.
    """
    if not 0 <= index < len(shapes.data):
        raise ValueError(f"{shapes.name!r} has no shape {index + 1}; pick one of its shapes")
    polygons = shape_polygons(shapes, index, data_to_pixels(shapes, image))
    if not polygons:
        raise ValueError(
            f"{shape_label(shapes, index)} of {shapes.name!r} is a {shapes.shape_type[index]}, "
            "which encloses no pixels; draw a rectangle, an ellipse or a polygon"
        )
    row0, col0, row1, col1 = bounds(polygons)
    box = snap_box(np.array([[row0, col0], [row1, col1]]), plane_shape, shape_label(shapes, index))
    if box is not None:
        moved = [p.mapped(lambda ring: ring - np.array(box.origin, dtype=float)) for p in polygons]
        mask = polygons_mask(moved, box.shape)
        if mask.any():
            return PlaneMask(box, mask)
    raise ValueError(
        f"{shape_label(shapes, index)} of {shapes.name!r} covers no pixel of {image.name!r}; "
        "draw it on the image"
    )


def labels_region(
    image: Image,
    labels: Labels,
    value: int,
    plane_shape: Sequence[int],
    world_point: Sequence[float],
) -> PlaneMask:
    """The pixels of ``image``'s plane whose centre lies on label ``value``, or ``ValueError``.

    The labels layer may have its own scale and translate: each image pixel takes the label
    of the labels pixel its centre falls in. ``world_point`` (``viewer.dims.point``) picks the
    labels' plane when it has more than two axes.
    """
    found = _labels_plane(labels, world_point) == value
    if not found.any():
        raise ValueError(f"{labels.name!r} has no pixel labelled {value}; paint it or pick another")
    rows, cols = np.nonzero(found)
    edges = [
        (low - 0.5, high + 0.5)
        for low, high in ((rows.min(), rows.max()), (cols.min(), cols.max()))
    ]
    corners = np.array([[r, c] for r in edges[0] for c in edges[1]])
    to_image = data_to_pixels(labels, image)
    box = snap_box(apply(to_image, corners), plane_shape, f"label {value}")
    if box is not None:
        grid = np.stack(
            np.meshgrid(
                np.arange(box.y0, box.y1, dtype=float),
                np.arange(box.x0, box.x1, dtype=float),
                indexing="ij",
            ),
            axis=-1,
        )
        at = np.rint(apply(np.linalg.inv(to_image), grid.reshape(-1, 2))).astype(int)
        inside = np.all((at >= 0) & (at < found.shape), axis=1)
        mask = np.zeros(len(at), dtype=bool)
        mask[inside] = found[at[inside, 0], at[inside, 1]]
        mask = mask.reshape(box.shape)
        if mask.any():
            return PlaneMask(box, mask)
    raise ValueError(f"label {value} of {labels.name!r} covers no pixel of {image.name!r}")


def _labels_plane(labels: Labels, world_point: Sequence[float]) -> np.ndarray:
    """The 2-D plane of ``labels`` at ``world_point`` (its finest level)."""
    data = labels.data[0] if labels.multiscale else labels.data
    leading = labels.ndim - 2
    if leading <= 0:
        return np.asarray(data)
    position = np.asarray(labels.world_to_data(world_point), dtype=float)[:leading]
    index = np.clip(np.rint(position), 0, np.asarray(data.shape[:leading]) - 1).astype(int)
    return np.asarray(data[tuple(index)])
