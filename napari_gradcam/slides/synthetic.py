"""Synthetic whole slides of any size, generated lazily chunk by chunk (for scale tests).

Tissue lies where a smooth random field is high (about ``tissue_share`` of the slide); it is
textured with a real H&E patch of the bundled CC0 slide, mirrored so that it repeats without
seams; the rest is glass. Every level is rendered from the same field and texture, so the
levels agree. Nothing is computed until a region is read.

Examples
--------
>>> slide = synthetic_slide(40_000)  # doctest: +SKIP
>>> slide.level_shapes[:2], slide.mpp  # doctest: +SKIP
(((40000, 40000, 3), (20000, 20000, 3)), 0.25)
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from napari_gradcam.slides.lazy_slide import Slide

TEXTURE_BOX = (768, 1088, 1280, 1600)
"""A 512 px square of the CC0 slide (level 0, 0.499 µm/px) that is almost all tissue."""

GLASS = np.array([241, 238, 243], dtype=np.uint8)
FIELD_CELLS = 48
"""Cells of the random tissue field across the slide (sets the size of tissue pieces)."""

BLOCK = 8
"""The tissue field is evaluated once per block of this many pixels of a level."""


def synthetic_slide(
    size: int | tuple[int, int] = 40_000,
    *,
    mpp: float = 0.25,
    tissue_share: float = 0.15,
    chunk: int = 512,
    seed: int = 0,
) -> Slide:
    """Return a lazily generated pyramid: levels halve until the shorter side is < ``chunk``.

    Parameters
    ----------
    size : int or tuple of int
        ``(height, width)`` of level 0 (an int for a square).
    mpp : float
        Microns per level-0 pixel (the texture is scaled to match).
    tissue_share : float
        Approximate share of the slide covered by tissue.
    chunk : int
        Chunk side of the dask arrays.
    seed : int
        Seed of the tissue field.
    """
    import dask.array as da

    height, width = (size, size) if isinstance(size, int) else size
    field = _tissue_field(seed, tissue_share)
    levels, downsamples, factor = [], [], 1
    while min(height, width) // factor >= chunk or factor == 1:
        shape = (-(-height // factor), -(-width // factor), 3)
        levels.append(
            da.map_blocks(
                _render_block,
                chunks=da.core.normalize_chunks((chunk, chunk, 3), shape),
                dtype=np.uint8,
                meta=np.empty((0, 0, 0), np.uint8),
                field=field,
                factor=factor,
                full=(height, width),
                texture_scale=_texture_scale(mpp, factor),
            )
        )
        downsamples.append((float(factor), float(factor)))
        factor *= 2
    name = f"synthetic {height} x {width}"
    return Slide(tuple(levels), tuple(downsamples), mpp, "given", name)


def _texture_scale(mpp: float, factor: int) -> float:
    """Texture pixels (of the CC0 patch) per pixel of a level."""
    from napari_gradcam.data import HE_MPP

    return mpp * factor / HE_MPP


def _tissue_field(seed: int, share: float) -> tuple[np.ndarray, float]:
    """A smooth random field on the unit square and the level above which there is tissue."""
    from scipy.ndimage import gaussian_filter

    noise = np.random.default_rng(seed).random((FIELD_CELLS, FIELD_CELLS))
    smooth = gaussian_filter(noise, sigma=2.5, mode="reflect")
    return smooth, float(np.quantile(smooth, 1.0 - share))


@functools.lru_cache(maxsize=8)
def _texture(scale: float) -> np.ndarray:
    """The CC0 patch resized to ``1 / scale`` and mirrored into a seamless (2P, 2P, 3) tile."""
    from skimage.transform import resize

    from napari_gradcam.data import read_he_region

    y0, x0, y1, x1 = TEXTURE_BOX
    patch = read_he_region()[y0:y1, x0:x1]
    side = max(2, round((y1 - y0) / scale))
    resized = resize(patch, (side, side), order=1, anti_aliasing=scale > 1, preserve_range=True)
    tile = resized.round().astype(np.uint8)
    top = np.concatenate([tile, tile[:, ::-1]], axis=1)
    return np.concatenate([top, top[::-1]], axis=0)


def _render_block(
    block_info: dict[Any, Any] | None = None,
    *,
    field: tuple[np.ndarray, float],
    factor: int,
    full: tuple[int, int],
    texture_scale: float,
) -> np.ndarray:
    """Pixels of one chunk of the level ``factor`` times coarser than level 0."""
    (r0, r1), (c0, c1), _ = block_info[None]["array-location"]
    tissue = _tissue_blocks(field, factor, full, (r0, r1), (c0, c1))
    texture = _texture(texture_scale)
    period = texture.shape[0]
    pixels = texture[np.ix_(np.arange(r0, r1) % period, np.arange(c0, c1) % period)]
    return np.where(tissue[..., None], pixels, GLASS)


def _tissue_blocks(
    field: tuple[np.ndarray, float],
    factor: int,
    full: tuple[int, int],
    rows: tuple[int, int],
    cols: tuple[int, int],
) -> np.ndarray:
    """Where the chunk ``rows`` x ``cols`` is tissue, decided per ``BLOCK`` pixels."""
    from scipy.ndimage import map_coordinates

    values, level = field
    centres = [
        (np.arange(start, stop, BLOCK) + BLOCK / 2) * factor / extent * (FIELD_CELLS - 1)
        for (start, stop), extent in zip((rows, cols), full, strict=True)
    ]
    grid = np.meshgrid(*centres, indexing="ij")
    coarse = map_coordinates(values, grid, order=1, mode="nearest") > level
    blocks = np.repeat(np.repeat(coarse, BLOCK, axis=0), BLOCK, axis=1)
    return blocks[: rows[1] - rows[0], : cols[1] - cols[0]]
