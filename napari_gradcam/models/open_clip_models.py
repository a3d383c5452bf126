"""open_clip architectures by name (``open_clip:ARCH``): both towers, random weights.

The image tower is explained, the text tower encodes prompts; the real weights only ever come
from a file. open_clip is optional (``pip install open_clip_torch``): it is imported when an
``open_clip:ARCH`` spec is loaded, and never downloads anything here. Architectures whose towers
or tokenizer come from the Hugging Face hub are refused, unless the card names a local
tokenizer folder (see ``TextCard``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from napari_gradcam.core.card import OPEN_CLIP_TOKENIZER, TextCard

Tokenizer = Callable[[list[str]], torch.Tensor]
"""Prompts to token ids (P, context length)."""


def import_open_clip() -> Any:
    """open_clip, or a ``ValueError`` saying how to install it."""
    try:
        import open_clip
    except (ImportError, RuntimeError, OSError) as err:
        raise ValueError(
            f"open_clip cannot be imported here ({err}); install it to load 'open_clip:ARCH' "
            "models: pip install open_clip_torch"
        ) from err
    return open_clip


def build_open_clip(arch: str) -> nn.Module:
    """open_clip's model ``arch`` (both towers) with random weights, in eval mode.

    Raises
    ------
    ValueError
        When open_clip is missing, the architecture is unknown (closest names listed), or
        building it would download a tower from the Hugging Face hub.
    """
    open_clip = import_open_clip()
    config = open_clip.get_model_config(arch)
    if config is None:
        close = difflib.get_close_matches(arch, open_clip.list_models(), n=5, cutoff=0.6)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise ValueError(f"open_clip has no architecture {arch!r}{hint}")
    hub_text = config.get("text_cfg", {}).get("hf_model_name")
    if hub_text or config.get("vision_cfg", {}).get("timm_model_pretrained"):
        raise ValueError(
            f"open_clip's {arch!r} builds a tower from downloaded weights or configs "
            f"({hub_text or 'a pretrained timm model'}); nothing is downloaded here, so this "
            "architecture cannot be loaded: choose one whose towers open_clip builds itself"
        )
    model = open_clip.create_model(arch, pretrained=None, load_weights=False, pretrained_text=False)
    return model.eval()


def open_clip_image_tower(model: nn.Module) -> nn.Module:
    """``model.visual``, returning the image embedding (N, D) only.

    A tower that also returns its tokens (CoCa's ``output_tokens``) is set to return its
    embedding alone, as ``encode_image`` does.
    """
    visual = model.visual
    if getattr(visual, "output_tokens", False):
        visual.output_tokens = False
    return visual


def open_clip_card_fields(model: nn.Module) -> dict[str, Any]:
    """Model-card fields from open_clip's preprocessing config: mean, std and input size.

    open_clip sets them on the image tower (``image_mean``, ``image_std``, ``image_size``)
    without downloading anything; an image tower's output is its embedding.
    """
    visual = model.visual
    size = getattr(visual, "image_size", None)
    found: dict[str, Any] = {"output": "embedding"}
    for key, attribute in (("mean", "image_mean"), ("std", "image_std")):
        if getattr(visual, attribute, None):
            found[key] = tuple(float(v) for v in getattr(visual, attribute))
    if size is not None:
        found["input_size"] = (size, size) if isinstance(size, int) else tuple(size)
    return found


def open_clip_tokenizer(arch: str, text: TextCard | None) -> Tokenizer:
    """The tokenizer of ``arch``'s prompts, as the card's ``text.tokenizer`` says.

    ``None`` or ``"open_clip:NAME"``: open_clip's own tokenizer of that architecture, which
    ships with open_clip; a folder: the Hugging Face tokenizer saved there (read with
    ``local_files_only``).

    Raises
    ------
    ValueError
        When the tokenizer would be downloaded from the Hugging Face hub (SigLIP's, ...) and
        the card names no folder, or the folder named does not exist.
    """
    open_clip = import_open_clip()
    named = text.tokenizer if text is not None else None
    if named is not None and not named.startswith(OPEN_CLIP_TOKENIZER):
        return _folder_tokenizer(open_clip, arch, Path(named))
    own = named.removeprefix(OPEN_CLIP_TOKENIZER) if named else arch
    config = open_clip.get_model_config(own)
    if config is None:
        raise ValueError(f"open_clip has no architecture {own!r} to take a tokenizer from")
    hub_name = config.get("text_cfg", {}).get("hf_tokenizer_name") or (
        "a SigLIP tokenizer" if "siglip" in own.lower() else None
    )
    if hub_name:
        raise ValueError(
            f"open_clip's tokenizer of {own!r} is a Hugging Face tokenizer ({hub_name}), "
            "which would be downloaded; nothing is downloaded here. Save it to a folder once "
            'and name that folder in the model card: "text": {"tokenizer": "folder"}'
        )
    return open_clip.get_tokenizer(own)


def _folder_tokenizer(open_clip: Any, arch: str, folder: Path) -> Tokenizer:
    if not folder.is_dir():
        raise ValueError(
            f"the model card's 'text.tokenizer' folder {str(folder)!r} does not exist; give "
            "the folder holding the tokenizer's files (tokenizer.json, ...), relative to the "
            "card, or 'open_clip:ARCH' for open_clip's own"
        )
    text_config = (open_clip.get_model_config(arch) or {}).get("text_cfg", {})
    return open_clip.tokenizer.HFTokenizer(
        str(folder),
        context_length=text_config.get("context_length", 77),
        local_files_only=True,
        **text_config.get("tokenizer_kwargs", {}),
    )


def open_clip_text(
    model: nn.Module, arch: str, text: TextCard | None
) -> Callable[[list[str]], torch.Tensor]:
    """Prompts to text embeddings (P, D): ``encode_text`` of the tokenized prompts.

    Tokenized as the card says (``open_clip_tokenizer``, which refuses a tokenizer that would
    be downloaded).
    """
    tokenizer = open_clip_tokenizer(arch, text)

    def encode(prompts: list[str]) -> torch.Tensor:
        device = open_clip_text_parameters(model)[0].device
        return model.encode_text(tokenizer(prompts).to(device))

    return encode


def open_clip_text_parameters(model: nn.Module) -> list[torch.Tensor]:
    """The parameters of ``model``'s text tower: every one outside the image tower."""
    return [p for name, p in model.named_parameters() if not name.startswith("visual.")]
