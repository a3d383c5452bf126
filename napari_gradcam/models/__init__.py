"""Model specs, model cards and the bundled demo model.

Exported lazily: importing a torch-free module of this package (``models.bundled``) must not
import torch through the loader.
"""

import importlib
from typing import Any

_EXPORTS = {
    "LoadedModel": "napari_gradcam.core.loaded_model",
    "load_model": "napari_gradcam.models.loading",
    "ModelCard": "napari_gradcam.core.card",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
