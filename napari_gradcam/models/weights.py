"""Read weights without unpickling: safetensors files and ``weights_only`` PyTorch state dicts."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

NESTED_KEYS = ("state_dict", "model_state_dict", "model")
"""Keys under which training checkpoints commonly nest the model's state dict."""
PICKLE_PROTOCOL_OPCODE = 0x80
"""The first byte of a pickle of protocol 2 or later: how a legacy (non-zip) torch.save begins."""
CORRUPT_FILE_ERRORS = (RuntimeError, OSError, EOFError, KeyError, IndexError, ValueError)
"""What torch.load raises on a damaged or foreign file (besides UnpicklingError)."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a ``.safetensors`` file or a PyTorch file, never unpickling code.

    A PyTorch file is read with ``torch.load(weights_only=True)``; a checkpoint that nests the
    weights under one of ``NESTED_KEYS`` is unwrapped.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When the file is not a plain state dict (it needs unpickling, or holds something else).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no weights file {str(path)!r}")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    _check_torch_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path} is not a plain state dict (it needs unpickling, which runs code from the "
            f"file): {err}. Save model.state_dict() with torch.save or as .safetensors"
        ) from err
    except CORRUPT_FILE_ERRORS as err:
        raise ValueError(f"{path} is not a readable PyTorch weights file: {err}") from err
    for key in NESTED_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds {type(state).__name__}, not a state dict")
    return state


def _check_torch_file(path: Path) -> None:
    """Refuse a file that is neither a zip archive nor a legacy pickle, before unpickling it."""
    with path.open("rb") as file:
        first = file.read(1)
    if zipfile.is_zipfile(path) or first == bytes([PICKLE_PROTOCOL_OPCODE]):
        return
    hint = (
        "it is Python source: give it as the model ('file.py:factory', --model) and the "
        "weights file with --weights"
        if path.suffix == ".py"
        else "save model.state_dict() with torch.save, or as .safetensors"
    )
    what = "empty" if not first else "not a PyTorch weights file (torch.save writes zip archives)"
    raise ValueError(f"{path} is {what}; {hint}")


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err


def load_weights(module: nn.Module, path: str | Path, *, what: str = "the model") -> None:
    """Load the state dict in ``path`` into ``module``; every key must fit, both ways.

    A key naming one of the module's non-persistent buffers (Hugging Face's ``position_ids``,
    saved by older versions) is left out: the module computes that buffer itself.

    Raises
    ------
    ValueError
        Naming the first missing and unexpected keys, or the first shape that does not fit.
    """
    state = read_state_dict(path)
    saved = module.state_dict().keys()
    computed = {name for name, _ in module.named_buffers() if name not in saved}
    state = {key: value for key, value in state.items() if key not in computed}
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shapes that do not fit
        raise ValueError(f"the weights in {path} do not fit {what}: {err}") from err
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"the weights in {path} do not fit {what}: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
