"""napari-gradcam: see what a PyTorch image classifier looked at.

The public API is re-exported here lazily, so that ``import napari_gradcam`` (and opening
napari with the plugin installed) does not import torch.

Examples
--------
>>> import napari_gradcam as ng
>>> model = ng.load_model("demo")                      # doctest: +SKIP
>>> exp = ng.explain(model, tile)                      # doctest: +SKIP
>>> exp.cam.shape, exp.target_names, exp.probabilities # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "explain": "napari_gradcam.core.explain.pipeline",
    "Explanation": "napari_gradcam.core.explain.explanation",
    "ExplanationCancelled": "napari_gradcam.core.explain.context",
    "Monitor": "napari_gradcam.core.explain.context",
    "ExplainSettings": "napari_gradcam.core.settings",
    "OcclusionOptions": "napari_gradcam.core.explain.methods.occlusion",
    "RolloutOptions": "napari_gradcam.core.explain.methods.attention",
    "AttentionOptions": "napari_gradcam.core.explain.methods.attention",
    "normalize_cam": "napari_gradcam.core.explain.explanation",
    "heatmap_transform": "napari_gradcam.core.regions.placement",
    "candidate_layers": "napari_gradcam.core.explain.model_layers",
    "candidate_layouts": "napari_gradcam.core.explain.model_layers",
    "default_layer": "napari_gradcam.core.explain.model_layers",
    "resolve_layer": "napari_gradcam.core.explain.model_layers",
    "vit_facts": "napari_gradcam.core.explain.model_layers",
    "METHODS": "napari_gradcam.core.explain.methods",
    "trust_report": "napari_gradcam.core.trust.report",
    "sanity_check": "napari_gradcam.core.trust.sanity",
    "deletion_insertion": "napari_gradcam.core.trust.faithfulness",
    "feature_stack": "napari_gradcam.core.trust.features",
    "class_contrast": "napari_gradcam.core.trust.contrast",
    "load_model": "napari_gradcam.models",
    "LoadedModel": "napari_gradcam.models",
    "ModelCard": "napari_gradcam.models",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import public names on first use (keeps torch out of napari's start-up)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'napari_gradcam' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
