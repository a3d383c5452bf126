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
    # one image or a batch: explain it, and what the map means
    "explain": "napari_gradcam.core.explain.pipeline",
    "map_geometry": "napari_gradcam.core.explain.pipeline",
    "Explanation": "napari_gradcam.core.explain.explanation",
    "normalize_cam": "napari_gradcam.core.explain.explanation",
    "heatmap_transform": "napari_gradcam.core.regions.placement",
    "ExplanationCancelled": "napari_gradcam.core.explain.context",
    "Monitor": "napari_gradcam.core.explain.context",
    "ExplainSettings": "napari_gradcam.core.settings",
    "OcclusionOptions": "napari_gradcam.core.explain.methods.occlusion",
    "RolloutOptions": "napari_gradcam.core.explain.methods.attention",
    "AttentionOptions": "napari_gradcam.core.explain.methods.attention",
    "LegradOptions": "napari_gradcam.core.explain.methods.legrad",
    "METHODS": "napari_gradcam.core.explain.methods",
    # what to explain: a class, several, a contrast, a prompt, a region like this, an output region
    "Classes": "napari_gradcam.core.targets",
    "Contrast": "napari_gradcam.core.targets",
    "Prompt": "napari_gradcam.core.targets",
    "LikeEmbedding": "napari_gradcam.core.targets",
    "OutputRegion": "napari_gradcam.core.targets",
    "describe_target": "napari_gradcam.core.targets",
    "embed_region": "napari_gradcam.core.explain.region_embedding",
    "TextEncoder": "napari_gradcam.core.text_encoder",
    # a model's layers
    "candidate_layers": "napari_gradcam.core.explain.model_layers",
    "candidate_layouts": "napari_gradcam.core.explain.model_layers",
    "default_layer": "napari_gradcam.core.explain.model_layers",
    "resolve_layer": "napari_gradcam.core.explain.model_layers",
    "vit_facts": "napari_gradcam.core.explain.model_layers",
    # models
    "load_model": "napari_gradcam.models.loading",
    "cached_model": "napari_gradcam.models.cache",
    "LoadedModel": "napari_gradcam.core.loaded_model",
    "ModelCard": "napari_gradcam.core.card",
    "load_slide_model": "napari_gradcam.models.slide_model",
    # progress of the pipeline generators
    "Progress": "napari_gradcam.core.progress",
    "run_to_end": "napari_gradcam.core.progress",
    # tiles of a slide or a region: plan, read, explain, stitch
    "TilePlan": "napari_gradcam.core.tiling.tiled",
    "plan_tiles": "napari_gradcam.core.tiling.tiled",
    "level_view": "napari_gradcam.core.tiling.tiled",
    "read_tiles": "napari_gradcam.core.tiling.tiled",
    "preprocess_tiles": "napari_gradcam.core.tiling.tiled",
    "explain_tile_batch": "napari_gradcam.core.tiling.tiled",
    "mapped_batches": "napari_gradcam.core.tiling.loop",
    "explained_batches": "napari_gradcam.core.tiling.loop",
    "explain_tiled": "napari_gradcam.core.tiling.loop",
    # whole slides
    "open_slide": "napari_gradcam.slides.lazy_slide",
    "synthetic_slide": "napari_gradcam.slides.synthetic",
    "SlideJob": "napari_gradcam.slides.runner",
    "plan_slide": "napari_gradcam.slides.runner",
    "SlideOutputs": "napari_gradcam.slides.outputs",
    "explain_slide": "napari_gradcam.slides.runner",
    # slide-level models (MIL) and tile embeddings
    "slide_embeddings": "napari_gradcam.slides.embeddings",
    "embed_slide": "napari_gradcam.slides.embeddings",
    "MilJob": "napari_gradcam.slides.mil_runner",
    "MilOutputs": "napari_gradcam.slides.mil_outputs",
    "run_slide_mil": "napari_gradcam.slides.mil_runner",
    "explain_slide_mil": "napari_gradcam.slides.mil_runner",
    "gradient_x_embedding": "napari_gradcam.core.mil.attribution",
    "integrated_gradients": "napari_gradcam.core.mil.attribution",
    # trust
    "trust_report": "napari_gradcam.core.trust.report",
    "iter_trust_report": "napari_gradcam.core.trust.report",
    "sanity_check": "napari_gradcam.core.trust.sanity",
    "deletion_insertion": "napari_gradcam.core.trust.faithfulness",
    "feature_stack": "napari_gradcam.core.trust.features",
    "class_contrast": "napari_gradcam.core.trust.contrast",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import public names on first use (keeps torch out of napari's start-up)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'napari_gradcam' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
