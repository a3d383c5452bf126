"""What the Explain dock asks the model about: the target kind and that kind's own controls.

A classifier answers "class", "several classes" (summed) and "class vs another" (Finer-CAM); an
image encoder answers "like a region" and, with a text tower (a vision-language model),
"prompt"; a segmentation model answers "output region". Kinds the loaded model cannot answer
stay in the list, greyed, with a tooltip that says why. The controls read into a core target
(:meth:`TargetControls.target_value`), or into a region the job finishes in its worker
(:meth:`TargetControls.region_target`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from magicgui.widgets import ComboBox, Select, SpinBox
from magicgui.widgets.bases import Widget
from napari.layers import Image, Labels, Layer, Shapes
from napari.viewer import Viewer
from qtpy.QtWidgets import QComboBox

from napari_gradcam._napari.explain import tips
from napari_gradcam._napari.explain.recent_prompts import recent_prompts, remember_prompt
from napari_gradcam._napari.explain.region_query import (
    LikeRegion,
    OutputMask,
    RegionTarget,
    labels_region,
    shape_label,
    shape_region,
)
from napari_gradcam._napari.model_events import ModelInfo
from napari_gradcam.core.targets import Classes, Contrast, Prompt, Target

CLASS = "class"
SEVERAL = "several classes"
CONTRAST = "class vs another"
PROMPT = "prompt"
LIKE = "like a region"
OUTPUT = "output region"
KINDS = (CLASS, SEVERAL, CONTRAST, PROMPT, LIKE, OUTPUT)
PREDICTED = "predicted"
NEAREST = "nearest class"
SELECTED = -1
"""The shape choice that means the Shapes layer's selected shape."""
PROMPT_SEPARATOR = ";"
OUTPUTS = {
    "classes": "a classifier (class scores)",
    "embedding": "an image encoder (an embedding)",
    "dense": "a segmentation model (a map of class scores)",
}
"""A model's ``card.output``, in words."""
NEEDS = {
    CLASS: ("classes", "a classifier (a model that scores classes)"),
    SEVERAL: ("classes", "a classifier (a model that scores classes)"),
    CONTRAST: ("classes", "a classifier (a model that scores classes)"),
    PROMPT: ("embedding", "a vision-language model (image and text towers, CLIP/CONCH-like)"),
    LIKE: ("embedding", "an image encoder (a model whose output is an embedding)"),
    OUTPUT: ("dense", "a segmentation model (a model that scores every pixel)"),
}
"""Per kind: the model output it needs, and that need in words."""


def unavailable(kind: str, output: str, text: bool | None) -> str | None:
    """Why a model cannot answer ``kind``; None when it can.

    ``output`` is its card's (``"classes"``, ``"embedding"``, ``"dense"``); ``text`` whether
    it has a text tower (None: not known until it is loaded).
    """
    needed, words = NEEDS[kind]
    model = OUTPUTS.get(output, output)
    if output != needed:
        return f"{kind} needs {words}; this model is {model}"
    if kind == PROMPT and text is False:
        return f"{kind} needs {words}; this image encoder has no text tower: try {LIKE!r}"
    return None


def split_prompts(text: str) -> tuple[str, ...]:
    """The prompts typed in one box, split at ``;`` (several form an ensemble)."""
    return tuple(part.strip() for part in text.split(PROMPT_SEPARATOR) if part.strip())


class TargetControls:
    """The target kind chooser and each kind's controls (``controls``, in dock order).

    ``viewer`` lists the Shapes and Labels layers for the region kinds.
    """

    def __init__(self, viewer: Viewer) -> None:
        self._viewer = viewer
        self._classes: tuple[str, ...] = ()
        self._watched: Shapes | None = None
        self.kind = ComboBox(label="target", choices=KINDS, value=CLASS, tooltip=tips.KIND_TIP)
        self.target = ComboBox(label="class", choices=self._class_choices, tooltip=tips.TARGET_TIP)
        self.several = Select(label="classes", choices=self._names, tooltip=tips.SEVERAL_TIP)
        self.several.native.setMaximumHeight(6 * self.several.native.fontMetrics().lineSpacing())
        self.main = ComboBox(label="class", choices=self._names, tooltip=tips.MAIN_TIP)
        self.against = ComboBox(
            label="against", choices=self._against_choices, tooltip=tips.AGAINST_TIP
        )
        self._recent = recent_prompts()
        self.prompt = ComboBox(
            label="prompt", choices=self._recent_prompts, tooltip=tips.PROMPT_TIP
        )
        box = self.prompt.native
        box.setEditable(True)
        box.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        box.lineEdit().setPlaceholderText("e.g. nuclei-dense tissue; tumour cells")
        self.region_layer = ComboBox(
            label="region in", choices=self._region_layers, tooltip=tips.REGION_LAYER_TIP
        )
        self.shape = ComboBox(label="shape", choices=self._shape_choices, tooltip=tips.SHAPE_TIP)
        self.label_value = SpinBox(label="label", min=1, max=2**31 - 1, tooltip=tips.LABEL_TIP)
        self.controls: tuple[Widget, ...] = (
            self.kind,
            self.target,
            self.several,
            self.main,
            self.against,
            self.prompt,
            self.region_layer,
            self.shape,
            self.label_value,
        )
        self.kind.changed.connect(self._show_kind)
        self.region_layer.changed.connect(self._on_region_layer)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self.region_layer.reset_choices)
        self._show_kind()
        self._on_region_layer(self.region_layer.value)

    @property
    def prompt_text(self) -> str:
        """The text in the prompt box (typed or picked)."""
        return self.prompt.native.currentText()

    @prompt_text.setter
    def prompt_text(self, text: str) -> None:
        self.prompt.native.setEditText(text)

    def on_prompt_entered(self, action: Callable[[], None]) -> None:
        """Call ``action`` when Enter is pressed in the prompt box."""
        self.prompt.native.lineEdit().returnPressed.connect(action)

    def offer(self, info: ModelInfo | None) -> None:
        """Offer ``info``'s classes, and only the kinds its model can answer.

        A kind it cannot answer is greyed with the reason as its tooltip; when the chosen
        kind is one of them, the first kind it answers is chosen.
        """
        self._classes = info.classes if info else ()
        output = info.output if info else "classes"
        text = info.text if info else None
        for control in (self.target, self.several, self.main, self.against):
            control.reset_choices()
        items = self.kind.native.model()
        for row, kind in enumerate(KINDS):
            reason = unavailable(kind, output, text)
            item = items.item(row)
            item.setEnabled(reason is None)
            item.setToolTip(reason or "")
        if unavailable(self.kind.value, output, text) is not None:
            self.kind.value = next(k for k in KINDS if unavailable(k, output, text) is None)

    def reason_unavailable(self, kind: str) -> str | None:
        """The greyed ``kind``'s tooltip: why the model cannot answer it (None: it can)."""
        item = self.kind.native.model().item(KINDS.index(kind))
        return None if item.isEnabled() else item.toolTip()

    def target_value(self) -> Target:
        """The target the controls ask for, or ``ValueError`` saying what to set.

        None for the region kinds too: their target is finished in the worker
        (:meth:`region_target`).
        """
        kind = self.kind.value
        reason = self.reason_unavailable(kind)
        if reason is not None:
            raise ValueError(reason)
        if kind == CLASS:
            return None if self.target.value == PREDICTED else self.target.value
        if kind == SEVERAL:
            chosen = tuple(self.several.value)
            if len(chosen) < 2:
                raise ValueError("tick two or more classes to explain them together")
            return Classes(chosen)
        if kind == CONTRAST:
            return self._contrast()
        if kind == PROMPT:
            texts = split_prompts(self.prompt_text)
            if not texts:
                raise ValueError("type a prompt, e.g. 'nuclei-dense tissue'")
            return Prompt(texts)
        return None

    def region_target(self, image: Image, plane_shape: Sequence[int]) -> RegionTarget | None:
        """The region the region kinds point at, cut from ``image``'s plane (None otherwise).

        Raises ``ValueError`` saying what to draw or pick.
        """
        if self.kind.value not in (LIKE, OUTPUT):
            return None
        layer = self.region_layer.value
        if layer is None:
            where = "a Shapes layer" if self.kind.value == LIKE else "a Shapes or Labels layer"
            raise ValueError(f"add {where} and draw the region on the image")
        if isinstance(layer, Labels):
            value = self.label_value.value
            point = self._viewer.dims.point
            region = labels_region(image, layer, value, plane_shape, point)
            label = f"{layer.name} label {value}"
        else:
            index = self._shape_index(layer)
            region = shape_region(image, layer, index, plane_shape)
            label = shape_label(layer, index)
        if self.kind.value == LIKE:
            return LikeRegion(region, label)
        if self.main.value is None:
            raise ValueError("load the segmentation model to pick the class of the output region")
        return OutputMask(self.main.value, region, label)

    def remember(self, target: Target) -> None:
        """Remember an explained prompt: first in the recent list, here and next session."""
        if not isinstance(target, Prompt):
            return
        text = f"{PROMPT_SEPARATOR} ".join(target.texts)
        self._recent = remember_prompt(text)
        self.prompt.choices = ()  # refilled in the new order (a reset only adds and removes)
        self.prompt.reset_choices()
        self.prompt_text = text

    def _contrast(self) -> Contrast:
        main, against = self.main.value, self.against.value
        if main is None:
            raise ValueError("load a model with classes to contrast them")
        if against == main:
            raise ValueError(f"contrast {main!r} with another class, or with the nearest one")
        return Contrast(main, None if against == NEAREST else against)

    def _shape_index(self, shapes: Shapes) -> int:
        index = self.shape.value
        if index is not None and index != SELECTED:
            return int(index)
        selected = sorted(shapes.selected_data)
        if len(selected) == 1 or (not selected and len(shapes.data) == 1):
            return selected[0] if selected else 0
        if not len(shapes.data):
            raise ValueError(f"draw the region on {shapes.name!r} first")
        raise ValueError(
            f"select one shape of {shapes.name!r} (or pick it under 'shape'): "
            f"{len(selected) or 'none'} selected"
        )

    def _show_kind(self, *_args: Any) -> None:
        kind = self.kind.value
        self.target.visible = kind == CLASS
        self.several.visible = kind == SEVERAL
        self.main.visible = kind in (CONTRAST, OUTPUT)
        self.against.visible = kind == CONTRAST
        self.prompt.visible = kind == PROMPT
        self.region_layer.visible = kind in (LIKE, OUTPUT)
        self.region_layer.reset_choices()
        self._on_region_layer(self.region_layer.value)

    def _on_region_layer(self, layer: Layer | None) -> None:
        """Show the shape or the label control of the region's layer; follow its edits."""
        regional = self.kind.value in (LIKE, OUTPUT)
        self.shape.visible = regional and isinstance(layer, Shapes)
        self.label_value.visible = regional and isinstance(layer, Labels)
        if self._watched is not None:
            self._watched.events.data.disconnect(self._refresh_shapes)
            self._watched = None
        if isinstance(layer, Shapes):
            layer.events.data.connect(self._refresh_shapes)
            self._watched = layer
        self.shape.reset_choices()

    def _refresh_shapes(self, _event: Any = None) -> None:
        self.shape.reset_choices()

    def _recent_prompts(self, _widget: Widget) -> list[str]:
        return self._recent

    def _names(self, _widget: Widget) -> tuple[str, ...]:
        return self._classes

    def _class_choices(self, _widget: Widget) -> tuple[str, ...]:
        return (PREDICTED, *self._classes)

    def _against_choices(self, _widget: Widget) -> tuple[str, ...]:
        return (NEAREST, *self._classes)

    def _region_layers(self, _widget: Widget) -> list[tuple[str, Layer]]:
        kinds = (Shapes,) if self.kind.value == LIKE else (Shapes, Labels)
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, kinds)]

    def _shape_choices(self, _widget: Widget) -> list[tuple[str, int]]:
        layer = self.region_layer.value
        if not isinstance(layer, Shapes):
            return [("selected shape", SELECTED)]
        shapes = [
            (f"{shape_label(layer, i)} ({kind})", i) for i, kind in enumerate(layer.shape_type)
        ]
        return [("selected shape", SELECTED), *shapes]
