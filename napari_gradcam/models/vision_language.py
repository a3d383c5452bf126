"""Vision-language models: the image tower explained, the text tower encoding prompts.

Two spec families build one (``open_clip:ARCH`` and ``hf:FOLDER``): ``build_vision_language``
returns both towers, the card fields their library declares, and how to encode prompts with
the tokenizer the card names. The loader (``models.loading``) loads the weights into the whole
model, so the image tower a ``LoadedModel`` holds and the text tower its ``TextEncoder`` runs
are the same model's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from napari_gradcam.core.card import TextCard
from napari_gradcam.core.text_encoder import TextEncoder
from napari_gradcam.models.hugging_face_clip import (
    HuggingFaceImageTower,
    build_hugging_face_clip,
    hugging_face_card_fields,
    hugging_face_text,
    hugging_face_text_parameters,
)
from napari_gradcam.models.open_clip_models import (
    build_open_clip,
    open_clip_card_fields,
    open_clip_image_tower,
    open_clip_text,
    open_clip_text_parameters,
)
from napari_gradcam.models.specs import OPEN_CLIP_PREFIX, is_open_clip_spec


@dataclass(frozen=True)
class VisionLanguageModel:
    """Both towers of a vision-language model, before its weights and card are read.

    Attributes
    ----------
    model : torch.nn.Module
        The whole model (its state dict is the weights file's).
    image_tower : torch.nn.Module
        Its image tower: pixels (N, 3, H, W) to the image embedding (N, D); the module
        explained.
    card_fields : dict
        The card fields the model's library declares (mean, std, input size, output).
    text : callable
        ``text(card.text)``: the tokenizer the card names, checked, as a prompt encoder
        ``(prompts) -> (P, D)`` of the text tower.
    text_parameters : callable
        The text tower's parameters (a change empties the prompt cache).
    """

    model: nn.Module
    image_tower: nn.Module
    card_fields: dict[str, Any]
    text: Callable[[TextCard | None], Callable[[list[str]], torch.Tensor]]
    text_parameters: Callable[[], Iterable[torch.Tensor]]

    def text_encoder(self, text: TextCard | None) -> TextEncoder:
        """The prompt encoder of the card's ``text`` section (tokenizer, template)."""
        encode = self.text(text)
        return TextEncoder(
            encode=encode,
            template=text.template if text is not None else "{}",
            parameters=self.text_parameters,
        )


def build_vision_language(spec: str) -> VisionLanguageModel:
    """Both towers of ``spec`` with random weights (see the module docstring).

    Raises ``ValueError`` when the library is missing or refuses the spec (see
    ``build_open_clip`` and ``build_hugging_face_clip``).
    """
    if is_open_clip_spec(spec):
        arch = spec.removeprefix(OPEN_CLIP_PREFIX)
        model = build_open_clip(arch)
        return VisionLanguageModel(
            model=model,
            image_tower=open_clip_image_tower(model),
            card_fields=open_clip_card_fields(model),
            text=lambda text: open_clip_text(model, arch, text),
            text_parameters=lambda: open_clip_text_parameters(model),
        )
    model = build_hugging_face_clip(spec)
    return VisionLanguageModel(
        model=model,
        image_tower=HuggingFaceImageTower(model),
        card_fields=hugging_face_card_fields(model, spec),
        text=lambda text: hugging_face_text(model, text),
        text_parameters=lambda: hugging_face_text_parameters(model),
    )
