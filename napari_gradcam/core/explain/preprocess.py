"""Turn user pixels into the float batch a model expects (dtype, range, channels, normalisation)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from napari_gradcam.core.card import ModelCard


def pixel_range(dtype: np.dtype, sample: np.ndarray | None = None) -> tuple[float, float]:
    """Return ``(low, high)``: the pixel values mapped to 0 and 1.

    The one rule for every input (one image or every tile of a region): integers span their
    dtype's range (uint8 0-255, uint16 0-65535); booleans and floats already within [0, 1]
    are kept; other floats are stretched from the sample's minimum to its maximum (for tiles,
    a sample of the whole region, so every tile is scaled the same).

    Parameters
    ----------
    sample : numpy.ndarray, optional
        Pixels that show the value range of a float image; without it floats map [0, 1].

    Examples
    --------
    >>> pixel_range(np.uint8), pixel_range(np.float32, np.array([0.2, 0.8]))
    ((0.0, 255.0), (0.0, 1.0))
    >>> pixel_range(np.float32, np.array([-1.0, 3.0]))
    (-1.0, 3.0)
    """
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return (float(info.min), float(info.max))
    if dtype.kind == "b" or sample is None:
        return (0.0, 1.0)
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"pixels of dtype {dtype} are not an image; use numbers or bools")
    low, high = float(np.min(sample)), float(np.max(sample))
    if low >= 0.0 and high <= 1.0:
        return (0.0, 1.0)
    return (low, high) if high > low else (low, low + 1.0)


def to_unit_range(image: np.ndarray, value_range: Sequence[float] | None = None) -> np.ndarray:
    """Scale pixel values to float32, ``value_range`` (default :func:`pixel_range`) to [0, 1].

    Parameters
    ----------
    image : numpy.ndarray
        Pixels of any numeric or boolean dtype.
    value_range : sequence of float, optional
        ``(low, high)`` mapped to 0 and 1; default: the image's own :func:`pixel_range`.

    Returns
    -------
    numpy.ndarray
        float32 array of the same shape.
    """
    image = np.asarray(image)
    if image.dtype.kind not in "biuf":
        raise ValueError(f"pixels of dtype {image.dtype} are not an image; use numbers or bools")
    low, high = value_range if value_range is not None else pixel_range(image.dtype, image)
    if (low, high) == (0.0, 1.0):
        return image.astype(np.float32)
    return (image.astype(np.float32) - np.float32(low)) / np.float32(high - low)


def match_channels(image: np.ndarray, in_channels: int) -> np.ndarray:
    """Return ``image`` with ``in_channels`` on its last axis: gray repeated, alpha dropped.

    A 2-D image is gray (H, W); otherwise the last axis holds the channels ((H, W, C) or a
    stack (B, H, W, C)).
    """
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


def to_batch(
    pixels: np.ndarray,
    card: ModelCard,
    device: torch.device,
    *,
    stacked: bool = False,
    value_range: Sequence[float] | None = None,
) -> torch.Tensor:
    """Preprocess pixels into the model's normalised float batch (N, C, H, W) on ``device``.

    The one path from pixels to a model input, for a single image (``explain``, region
    probabilities) and for a stack of tiles (tiled explanations): the value range
    (:func:`pixel_range`), channels (:func:`match_channels`) and normalisation (the card's
    mean and std) are decided here only.

    Parameters
    ----------
    pixels : numpy.ndarray
        One image (H, W) or (H, W, C), checked with :func:`check_image`; or, with
        ``stacked``, same-size tiles (B, H, W) or (B, H, W, C) of one region.
    card : ModelCard
        Gives the channel count, mean and std.
    stacked : bool
        Whether ``pixels`` is a stack of tiles.
    value_range : sequence of float, optional
        ``(low, high)`` mapped to [0, 1]; default: :func:`pixel_range` of ``pixels`` (give
        the whole region's range when tiles of one region are preprocessed batch by batch).

    Returns
    -------
    torch.Tensor
        float32 ``(pixels in [0, 1] - mean) / std``, (1, C, H, W) for one image.
    """
    pixels = np.asarray(pixels)
    if not stacked:
        check_image(pixels, card)
        pixels = pixels[None]
    elif pixels.ndim not in (3, 4):
        raise ValueError(f"tiles must be (B, H, W) or (B, H, W, C), got shape {pixels.shape}")
    unit = to_unit_range(pixels, value_range)
    if unit.ndim == 3:
        unit = unit[..., None]
    unit = match_channels(unit, card.in_channels)
    mean = np.asarray(card.mean, dtype=np.float32)
    std = np.asarray(card.std, dtype=np.float32)
    normalised = (unit - mean) / std
    return torch.from_numpy(np.ascontiguousarray(normalised.transpose(0, 3, 1, 2))).to(device)


def check_tensor(batch: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``batch`` is a finite float tensor (N, C, H, W)."""
    if batch.ndim != 4:
        raise ValueError(f"a preprocessed tensor must be (N, C, H, W), got {tuple(batch.shape)}")
    if not batch.is_floating_point():
        raise ValueError(f"a preprocessed tensor must be floating point, got {batch.dtype}")
    if not torch.isfinite(batch).all():
        raise ValueError("the input tensor contains NaN or infinite values")
