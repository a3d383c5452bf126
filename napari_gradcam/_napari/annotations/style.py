"""How annotations look on the canvas: outlines wide enough to see over a heatmap, and labels.

Outline colours come from the labels (chosen off the turbo colormap's hues, see ``labels``);
this module sets their width and writes each shape's label next to it.
"""

from __future__ import annotations

from napari.layers import Image, Shapes

OUTLINE_SHARE = 1 / 250
"""Outline width as a share of the image's longer side (about 4 screen pixels when the
whole image fills the canvas)."""
MIN_OUTLINE = 3
LABEL_TEXT = {"string": "{label}", "color": "white", "size": 11, "anchor": "upper_left"}


def outline_width(image: Image | None) -> int:
    """Outline width in level-0 pixels of ``image`` (``MIN_OUTLINE`` when unknown)."""
    if image is None:
        return MIN_OUTLINE
    return max(MIN_OUTLINE, round(max(image.level_shapes[0][-2:]) * OUTLINE_SHARE))


def shows_no_text(shapes: Shapes) -> bool:
    """Whether the layer's text is napari's default: none."""
    return str(getattr(shapes.text.string, "constant", "x")) == ""


def style_annotations(shapes: Shapes, image: Image | None, *, widen: bool) -> None:
    """Write each shape's label on the canvas (unless the layer shows a text of its own).

    With ``widen`` (the plugin's own annotations layers), outlines are also widened to
    :func:`outline_width`, never narrowed.
    """
    if "label" in shapes.features and shows_no_text(shapes):
        shapes.text = LABEL_TEXT
    if widen:
        width = outline_width(image)
        shapes.current_edge_width = max(shapes.current_edge_width, width)
        if len(shapes.data):
            shapes.edge_width = [max(w, width) for w in shapes.edge_width]
