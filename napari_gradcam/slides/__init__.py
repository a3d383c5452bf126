"""Whole-slide images: one lazy slide over three backends, synthetic slides, the runner."""

from napari_gradcam.slides.lazy_slide import BACKENDS, SLIDE_SUFFIXES, Slide, open_slide

__all__ = ["BACKENDS", "SLIDE_SUFFIXES", "Slide", "open_slide"]
