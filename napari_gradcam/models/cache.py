"""One model cache for the docks and the slide runner: a model is loaded once per process.

The napari docks (in their worker threads) and the slide runner (in its Dask workers) ask for a
model by ``(spec, weights)``. The model is loaded again when one of its files (weights,
TorchScript or factory file, model card) changed on disk since, e.g. after retraining into the
same weights file. No napari here.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from napari_gradcam.models.loading import LoadedModel

MAX_MODELS = 4
"""Models kept at once; the least recently used one is dropped first."""

Stamps = tuple[tuple[str, int, int], ...]
_MODELS: OrderedDict[tuple[str, str | None], tuple[Stamps, LoadedModel]] = OrderedDict()
_LOCK = threading.Lock()


def cached_model(spec: str, weights: str | None = None) -> LoadedModel:
    """Load the model of ``(spec, weights)`` once, and again when its files changed on disk.

    Parameters
    ----------
    spec : str
        A model spec (see ``napari_gradcam.models.load_model``).
    weights : str, optional
        A state dict for a factory spec.

    Returns
    -------
    LoadedModel
        The same object for every call while the files stay unchanged.
    """
    from napari_gradcam.models.loading import load_model

    key, stamps = (spec, weights), file_stamps(spec, weights)
    with _LOCK:
        entry = _MODELS.get(key)
        if entry is None or entry[0] != stamps:
            entry = (stamps, load_model(spec, weights=weights))
            _MODELS[key] = entry
        _MODELS.move_to_end(key)
        while len(_MODELS) > MAX_MODELS:
            _MODELS.popitem(last=False)
        return entry[1]


def file_stamps(spec: str, weights: str | None) -> Stamps:
    """``(path, size, modification time)`` of the files a model spec reads, where they exist.

    The candidates are the spec itself (a TorchScript file), the file of a ``file.py:factory``
    spec, the weights, and the model card (``.json``) next to each.
    """
    candidates = [spec, spec.rpartition(":")[0], weights]
    paths = [Path(c) for c in candidates if c]
    paths += [path.with_suffix(".json") for path in paths]
    stamps = []
    for path in paths:
        try:
            info = path.stat()
        except OSError:
            continue
        stamps.append((str(path), info.st_size, info.st_mtime_ns))
    return tuple(stamps)
