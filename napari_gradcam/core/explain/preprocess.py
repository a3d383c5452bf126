"""Turn user pixels into the float batch a model expects (dtype, range, channels, normalisation)."""

from __future__ import annotations

import numpy as np
import torch

from napari_gradcam.core.card import ModelCard


def to_unit_range(image: np.ndarray) -> np.ndarray:
    """Scale pixel values to float32 in [0, 1].

    Integers are divided by their dtype's maximum (uint8 by 255, uint16 by 65535); booleans
    become 0/1; floats already within [0, 1] are kept, other floats are min-max scaled.

    Parameters
    ----------
    image : numpy.ndarray
        Pixels of any numeric or boolean dtype.

    Returns
    -------
    numpy.ndarray
        float32 array of the same shape.
    """
    if image.dtype == bool:
        return image.astype(np.float32)
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        shifted = image.astype(np.float32) - info.min
        return shifted / float(info.max - info.min)
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"pixels of dtype {image.dtype} are not an image; use numbers or bools")
    data = image.astype(np.float32)
    low, high = float(data.min()), float(data.max())
    if low >= 0.0 and high <= 1.0:
        return data
    return (data - low) / (high - low)


def match_channels(image: np.ndarray, in_channels: int) -> np.ndarray:
    """Return ``image`` as (H, W, in_channels): gray is repeated, an alpha channel dropped."""
    if image.ndim == 2:
        image = image[..., None]
    channels = image.shape[-1]
    if channels == in_channels:
        return image
    if channels == 1:
        return np.repeat(image, in_channels, axis=-1)
    if channels == 4 and in_channels == 3:
        return image[..., :3]
    if in_channels == 1 and channels in (3, 4):
        return image[..., :3].mean(axis=-1, keepdims=True)
    raise ValueError(
        f"the image has {channels} channels but the model takes {in_channels}; "
        "give an RGB, RGBA or grayscale image, or a model card with the right in_channels"
    )


def check_image(image: np.ndarray, card: ModelCard) -> None:
    """Raise ``ValueError`` with advice when ``image`` cannot be explained by this model."""
    if not (np.issubdtype(image.dtype, np.number) or image.dtype == bool):
        raise ValueError(f"pixels of dtype {image.dtype} are not an image; use numbers or bools")
    if image.size == 0:
        raise ValueError("the image is empty; choose a layer or region that holds pixels")
    if image.ndim not in (2, 3):
        raise ValueError(
            f"expected a 2-D image (H, W) or (H, W, C), got shape {image.shape}; "
            "for a stack, pass one slice"
        )
    if image.ndim == 3 and image.shape[-1] > 4 and image.shape[0] <= 4:
        raise ValueError(
            f"shape {image.shape} looks channels-first; pass (H, W, C), "
            "e.g. np.moveaxis(image, 0, -1)"
        )
    height, width = image.shape[:2]
    min_h, min_w = card.input_size or (1, 1)
    if height < min_h or width < min_w:
        raise ValueError(
            f"the image is {height} x {width} pixels but the model {card.name!r} needs at least "
            f"{min_h} x {min_w} (its input size); choose a larger region or zoom out"
        )
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise ValueError("the image contains NaN or infinite values; fill or crop them first")
    if image.min() == image.max():
        raise ValueError(
            f"the image is constant (every pixel is {image.flat[0]}); there is nothing to explain"
        )


def to_batch(image: np.ndarray, card: ModelCard, device: torch.device) -> torch.Tensor:
    """Preprocess one image into a normalised float tensor (1, C, H, W) on ``device``.

    Parameters
    ----------
    image : numpy.ndarray
        (H, W) or (H, W, C) pixels of any common dtype.
    card : ModelCard
        Gives the channel count, mean and std.
    device : torch.device
        Where the model lives.

    Returns
    -------
    torch.Tensor
        float32, ``(pixels in [0, 1] - mean) / std``.
    """
    image = np.asarray(image)
    check_image(image, card)
    pixels = match_channels(to_unit_range(image), card.in_channels)
    mean = np.asarray(card.mean, dtype=np.float32)
    std = np.asarray(card.std, dtype=np.float32)
    normalised = (pixels - mean) / std
    chw = np.ascontiguousarray(normalised.transpose(2, 0, 1)[None])
    return torch.from_numpy(chw).to(device)


def check_tensor(batch: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``batch`` is a finite float tensor (N, C, H, W)."""
    if batch.ndim != 4:
        raise ValueError(f"a preprocessed tensor must be (N, C, H, W), got {tuple(batch.shape)}")
    if not batch.is_floating_point():
        raise ValueError(f"a preprocessed tensor must be floating point, got {batch.dtype}")
    if not torch.isfinite(batch).all():
        raise ValueError("the input tensor contains NaN or infinite values")
