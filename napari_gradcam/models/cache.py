"""One model cache for the docks and the slide runner: a model is loaded once per process.

The napari docks (in their worker threads) and the slide runner (in its Dask workers) ask for a
model by ``(spec, weights)``, and the slide-level dock for a slide model by its card. A model is
loaded again when any file it is built from (``models.sources``: weights, TorchScript or
factory file, model card, recipe; for a slide model also its encoder's and aggregator's files
and weights) changed size or modification time on disk since, e.g. after retraining into the
same weights file. An installed package's code is not checked: Python imports it once per
process, so reloading would not read an edit anyway. No napari here.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

    from napari_gradcam.core.loaded_model import LoadedModel
    from napari_gradcam.models.slide_model import SlideModel
    from napari_gradcam.models.sources import Stamps

Model = TypeVar("Model")

MAX_MODELS = 4
"""Models kept at once; the least recently used one is dropped first."""

_MODELS: OrderedDict[tuple[str, str | None], tuple[Stamps, LoadedModel | SlideModel]] = (
    OrderedDict()
)
_LOCK = threading.Lock()


def cached_model(spec: str, weights: str | None = None, *, trust_code: bool = False) -> LoadedModel:
    """Load the model of ``(spec, weights)`` once, and again when its files changed on disk.

    Parameters
    ----------
    spec : str
        A model spec (see ``napari_gradcam.load_model``).
    weights : str, optional
        A state dict for a factory spec.
    trust_code : bool
        Passed to ``load_model`` when the model is loaded. Not part of the key: a model
        already loaded with consent runs no new code when it is served again.

    Returns
    -------
    LoadedModel
        The same object for every call while the files stay unchanged.
    """
    from napari_gradcam.models.loading import load_model

    stamps = file_stamps(spec, weights)
    return _cached(
        (spec, weights), stamps, lambda: load_model(spec, weights=weights, trust_code=trust_code)
    )


def cached_slide_model(card: str | Path, *, trust_code: bool = False) -> SlideModel:
    """Load a slide-model card once, and again when a file it is built from changed on disk.

    ``trust_code`` is passed to ``load_slide_model`` when the card is loaded.

    Raises
    ------
    FileNotFoundError
        When there is no such card file.
    """
    from napari_gradcam.models.slide_model import load_slide_model

    path = Path(card).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no slide-model card {str(path)!r}; choose a .json card")
    path = path.resolve()
    key = ("slide model", str(path))
    from napari_gradcam.models.sources import slide_model_sources

    stamps = slide_model_sources(path).stamps()
    return _cached(key, stamps, lambda: load_slide_model(str(path), trust_code=trust_code))


def _cached(key: tuple[str, str | None], stamps: Stamps, load: Callable[[], Model]) -> Model:
    """The cached entry of ``key`` while its ``stamps`` hold, else ``load()`` (kept, LRU)."""
    with _LOCK:
        entry = _MODELS.get(key)
        if entry is None or entry[0] != stamps:
            entry = (stamps, load())
            _MODELS[key] = entry
        _MODELS.move_to_end(key)
        while len(_MODELS) > MAX_MODELS:
            _MODELS.popitem(last=False)
        return entry[1]


def file_stamps(spec: str, weights: str | None) -> Stamps:
    """``(path, size, modification time)`` of the files a model spec is built from."""
    from napari_gradcam.models.sources import model_sources

    return model_sources(spec, weights).stamps()
