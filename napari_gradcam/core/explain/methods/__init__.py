"""Class-activation-map methods, registered by name; one small module per family.

Each module declares its methods as :class:`CamMethod` objects next to their implementation
and options, and imports torch only inside its functions: the napari dock lists the methods
and builds their option controls without paying torch's import time.
"""

from __future__ import annotations

from napari_gradcam.core.explain.methods.ablation import ABLATIONCAM
from napari_gradcam.core.explain.methods.attention import (
    ATTENTION,
    ROLLOUT,
    TRANSFORMER_ATTRIBUTION,
)
from napari_gradcam.core.explain.methods.cam_method import CamMethod
from napari_gradcam.core.explain.methods.eigen import EIGENCAM
from napari_gradcam.core.explain.methods.gradient import (
    GRADCAM,
    GRADCAM_PLUS_PLUS,
    HIRESCAM,
    LAYERCAM,
    XGRADCAM,
)
from napari_gradcam.core.explain.methods.guided import GUIDED_BACKPROP, GUIDED_GRADCAM
from napari_gradcam.core.explain.methods.legrad import LEGRAD
from napari_gradcam.core.explain.methods.occlusion import OCCLUSION
from napari_gradcam.core.explain.methods.score import SCORECAM

METHODS: dict[str, CamMethod] = {
    method.name: method
    for method in (
        GRADCAM,
        GRADCAM_PLUS_PLUS,
        XGRADCAM,
        LAYERCAM,
        HIRESCAM,
        SCORECAM,
        ABLATIONCAM,
        EIGENCAM,
        GUIDED_BACKPROP,
        GUIDED_GRADCAM,
        OCCLUSION,
        ROLLOUT,
        ATTENTION,
        TRANSFORMER_ATTRIBUTION,
        LEGRAD,
    )
}


def get_method(name: str) -> CamMethod:
    """Return the method registered as ``name``, or raise with the valid names."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(
            f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}"
        ) from None
