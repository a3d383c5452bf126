"""Whole-slide images: lazy pyramids, synthetic test slides, and the headless slide runner."""

from napari_gradcam.slides.reader import Slide, open_slide

__all__ = ["Slide", "open_slide"]
