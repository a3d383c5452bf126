"""Review sessions in the viewer: gather layers into a ``Session`` and put one back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image, Layer, Shapes
from napari.viewer import Viewer

from napari_gradcam._napari.annotations.geojson_io import (
    ANNOTATION_KEY,
    annotations_layer_data,
    layer_annotations,
)
from napari_gradcam._napari.annotations.labels import LabelSet
from napari_gradcam._napari.records import HeatmapRecord
from napari_gradcam._napari.result_layers import placement_kwargs
from napari_gradcam.review.session import (
    ImageRef,
    SavedHeatmap,
    Session,
    load_session,
    save_session,
)


def image_reference(image: Image) -> ImageRef:
    """Return how to reopen ``image``: its sample key or file (neither for unsaved data)."""
    source = image.source
    sample = tuple(source.sample) if source.sample else None
    path = str(Path(source.path).resolve()) if source.path else None
    return ImageRef(image.name, path, sample)


def _display(layer: Image) -> dict[str, Any]:
    """How a heatmap is shown, as JSON-ready values."""
    return {
        "colormap": layer.colormap.name,
        "opacity": float(layer.opacity),
        "blending": str(layer.blending),
        "contrast_limits": [float(v) for v in layer.contrast_limits],
        "interpolation2d": str(layer.interpolation2d),
        "visible": bool(layer.visible),
    }


def collect_session(viewer: Viewer, shapes: Shapes, image: Image, labels: LabelSet) -> Session:
    """Gather the image reference, its heatmaps and the annotations layer into a session."""
    records = [(layer, HeatmapRecord.of(layer)) for layer in viewer.layers]
    heatmaps = [
        SavedHeatmap(layer.name, np.asarray(layer.data), record.to_facts(), _display(layer))
        for layer, record in records
        if record is not None and record.image_layer == image.name
    ]
    annotations, _changed = layer_annotations(shapes, image, labels)
    return Session(image_reference(image), heatmaps, annotations, labels.as_dict(), shapes.name)


def save_review(
    viewer: Viewer,
    folder: str | Path,
    shapes: Shapes,
    image: Image,
    labels: LabelSet,
    *,
    overwrite: bool = False,
) -> Path:
    """Save the review of ``image`` into ``folder`` (see ``napari_gradcam.review.session``)."""
    return save_session(folder, collect_session(viewer, shapes, image, labels), overwrite=overwrite)


def _open_image(viewer: Viewer, reference: ImageRef) -> Image:
    """Return the reviewed image: already open, else from its sample or file."""
    if reference.name in viewer.layers and isinstance(viewer.layers[reference.name], Image):
        return viewer.layers[reference.name]
    if reference.sample is not None:
        added = viewer.open_sample(*reference.sample)
    elif reference.path is not None and Path(reference.path).exists():
        added = viewer.open(reference.path)
    else:
        raise ValueError(
            f"the reviewed image {reference.name!r} is not open and its file is unknown or "
            f"missing ({reference.path}); open it (named {reference.name!r}) and try again"
        )
    images = [layer for layer in added if isinstance(layer, Image)]
    if not images:
        raise ValueError(f"opening {reference.path or reference.sample} gave no image layer")
    return images[0]


def _heatmap_layer(saved: SavedHeatmap, image: Image) -> Layer:
    """The saved heatmap as a layer over ``image`` (the image may have been renamed)."""
    try:
        record = HeatmapRecord.from_facts({**saved.metadata, "image_layer": image.name})
    except ValueError as err:
        raise ValueError(
            f"the heatmap {saved.name!r} of the review cannot be shown: {err}"
        ) from err
    kwargs = {
        **saved.display,
        "name": saved.name,
        "metadata": record.to_metadata(),
        **placement_kwargs(image, record.stride, record.origin),
    }
    return Layer.create(np.asarray(saved.cam, dtype=np.float32), kwargs, "image")


def open_review(viewer: Viewer, folder: str | Path) -> tuple[Shapes, LabelSet]:
    """Reopen a review: the image (if not open), its heatmaps and the annotations layer.

    Raise ``ValueError`` when the folder holds no readable review or the image is not found.
    """
    session = load_session(folder)
    image = _open_image(viewer, session.image)
    for record in session.heatmaps:
        viewer.add_layer(_heatmap_layer(record, image))
    labels = LabelSet(session.labels or None)
    data, kwargs, _kind = annotations_layer_data(
        session.annotations, image, session.annotations_name
    )
    kwargs["metadata"][ANNOTATION_KEY]["labels"] = labels.as_dict()
    shapes = Shapes(data, **kwargs)
    viewer.add_layer(shapes)
    return shapes, labels
