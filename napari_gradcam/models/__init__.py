"""Model specs, model cards and the bundled demo model."""

from napari_gradcam.core.card import ModelCard
from napari_gradcam.models.loading import LoadedModel, load_model

__all__ = ["LoadedModel", "ModelCard", "load_model"]
