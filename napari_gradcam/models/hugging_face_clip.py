"""Hugging Face ``CLIPModel`` and ``SiglipModel`` built from a config (``hf:FOLDER``).

Random weights: the real ones only ever come from a file. The spec names a folder holding the
model's ``config.json`` (or that file itself). The config is data: its ``model_type`` picks
``CLIPModel`` or ``SiglipModel`` (nothing it names is imported or run), and
``preprocessor_config.json`` beside it, when there, gives the card's mean and std.
transformers is optional and never downloads anything here: the tokenizer comes from a local
folder the card names (``AutoTokenizer.from_pretrained(folder, local_files_only=True)``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from napari_gradcam.core.card import TextCard
from napari_gradcam.core.json_fields import read_json_object
from napari_gradcam.models.specs import HUGGING_FACE_PREFIX

MODEL_CLASSES = {"clip": "CLIPModel", "siglip": "SiglipModel"}
"""transformers' class built for each config ``model_type``."""
CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"
TEXT_MODULES = ("text_model.", "text_projection.")
"""Where the text tower's parameters are, in both classes."""


def config_file(spec: str) -> Path:
    """The ``config.json`` an ``hf:`` spec names (the folder's, or the file itself)."""
    path = Path(spec.removeprefix(HUGGING_FACE_PREFIX)).expanduser()
    return path / CONFIG_FILE if path.is_dir() else path


class HuggingFaceImageTower(nn.Module):
    """The image tower of a ``CLIPModel`` or ``SiglipModel``: the image embedding (N, D).

    The same as the model's ``get_image_features``: the vision transformer's pooled output
    (CLIP: its class token after ``post_layernorm``; SigLIP: its attention-pooling head),
    projected by CLIP's ``visual_projection``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.vision_model = model.vision_model
        self.visual_projection = getattr(model, "visual_projection", None) or nn.Identity()
        self.reads_class_token = model.config.model_type == "clip"

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """The image embedding (N, D) of ``pixels`` (N, 3, H, W)."""
        pooled = self.vision_model(pixel_values=pixels).pooler_output
        return self.visual_projection(pooled)

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """The image embedding (N, D) the tower's head makes of an encoder layer's tokens.

        CLIP: the class token, ``post_layernorm``, ``visual_projection``; SigLIP:
        ``post_layernorm`` of every token, then its attention-pooling ``head``. Used to score an
        intermediate layer (LeGrad).
        """
        vision = self.vision_model
        if self.reads_class_token:
            return self.visual_projection(vision.post_layernorm(tokens[:, 0]))
        return vision.head(vision.post_layernorm(tokens))


def import_transformers() -> Any:
    """transformers, or a ``ValueError`` saying how to install it."""
    try:
        import transformers
    except (ImportError, RuntimeError, OSError) as err:
        raise ValueError(
            f"transformers cannot be imported here ({err}); install it to load 'hf:FOLDER' "
            "models: pip install transformers"
        ) from err
    return transformers


def build_hugging_face_clip(spec: str) -> nn.Module:
    """The ``CLIPModel`` or ``SiglipModel`` of the config an ``hf:`` spec names, in eval mode.

    Raises
    ------
    ValueError
        When the config is missing, is not JSON, or is of another model type; or
        transformers is missing or refuses the config.
    """
    path = config_file(spec)
    if not path.is_file():
        raise ValueError(
            f"{spec!r}: no {path}; give 'hf:FOLDER', the folder holding the model's "
            f"{CONFIG_FILE} (or the path of that file)"
        )
    config = read_json_object(path, "Hugging Face config")
    model_type = config.get("model_type")
    if model_type not in MODEL_CLASSES:
        raise ValueError(
            f"{path}: 'model_type' is {model_type!r}; 'hf:' loads the vision-language models "
            f"{sorted(MODEL_CLASSES)} (a classifier loads as 'module:factory')"
        )
    transformers = import_transformers()
    model_class = getattr(transformers, MODEL_CLASSES[model_type])
    try:
        built = model_class(model_class.config_class.from_dict(config))
    except (TypeError, ValueError, KeyError) as err:
        name = model_class.__name__
        raise ValueError(f"transformers cannot build {name} from {path}: {err}") from err
    return built.eval()


def hugging_face_card_fields(model: nn.Module, spec: str) -> dict[str, Any]:
    """Model-card fields from the config: input size; mean and std from the preprocessor's."""
    found: dict[str, Any] = {"output": "embedding"}
    size = model.config.vision_config.image_size
    found["input_size"] = (size, size) if isinstance(size, int) else tuple(size)
    preprocessor = config_file(spec).with_name(PREPROCESSOR_FILE)
    if preprocessor.is_file():
        settings = read_json_object(preprocessor, "Hugging Face preprocessor config")
        for key, name in (("mean", "image_mean"), ("std", "image_std")):
            if isinstance(settings.get(name), list):
                found[key] = tuple(settings[name])
    return found


def hugging_face_text(
    model: nn.Module, text: TextCard | None
) -> Callable[[list[str]], torch.Tensor]:
    """Prompts to text embeddings (P, D): ``get_text_features`` of the tokenized prompts.

    The tokenizer is read from the card's ``text.tokenizer`` folder, never downloaded; prompts
    are padded to the text tower's length, as both models were trained.

    Raises
    ------
    ValueError
        When the card names no tokenizer folder, or the folder does not hold one.
    """
    folder = Path(text.tokenizer) if text is not None and text.tokenizer else None
    if folder is None or not folder.is_dir():
        where = "names none" if folder is None else f"names {str(folder)!r}, which does not exist"
        raise ValueError(
            f"a Hugging Face vision-language model needs its tokenizer from a local folder, and "
            f'the model card {where}; set "text": {{"tokenizer": "FOLDER"}} to the folder '
            "holding tokenizer.json (or vocab.json and merges.txt), relative to the card"
        )
    try:
        tokenizer = import_transformers().AutoTokenizer.from_pretrained(
            str(folder), local_files_only=True
        )
    except (OSError, ValueError) as err:
        raise ValueError(f"no tokenizer can be read from {folder}: {err}") from err
    length = model.config.text_config.max_position_embeddings

    def encode(prompts: list[str]) -> torch.Tensor:
        tokens = tokenizer(
            prompts, padding="max_length", max_length=length, truncation=True, return_tensors="pt"
        )
        device = hugging_face_text_parameters(model)[0].device
        given = {k: tokens[k].to(device) for k in ("input_ids", "attention_mask") if k in tokens}
        features = model.get_text_features(**given)
        return features if isinstance(features, torch.Tensor) else features.pooler_output

    return encode


def hugging_face_text_parameters(model: nn.Module) -> list[torch.Tensor]:
    """The parameters of ``model``'s text tower."""
    return [p for name, p in model.named_parameters() if name.startswith(TEXT_MODULES)]
