"""Which pyramid level (and resampling) puts a slide at the model's microns per pixel.

The one rule for every path that reads an image for a model: one box, tiles, region
probabilities and trust checks, in napari and on slides.
"""

from __future__ import annotations

from collections.abc import Sequence

TOLERANCE = 0.1
"""Relative mismatch of microns per pixel accepted without resampling."""


def choose_sampling(
    level_mpps: Sequence[float], target_mpp: float, tolerance: float = TOLERANCE
) -> tuple[int, float]:
    """Return ``(level, resample)`` that shows a slide at ``target_mpp`` µm per pixel.

    The coarsest level at most ``tolerance`` finer than the target is read; when it is
    still finer than that, it is downsampled by ``resample = target / level mpp``. A target
    finer than the finest level would need upsampling and is refused.

    Parameters
    ----------
    level_mpps : sequence of float
        Microns per pixel of each level, finest first.
    target_mpp : float
        Microns per pixel the model expects.
    tolerance : float
        Mismatch accepted as is.

    Examples
    --------
    >>> choose_sampling([0.25, 1.0, 4.0], 0.5)
    (0, 2.0)
    >>> choose_sampling([0.25, 0.5, 1.0], 0.499)
    (1, 1.0)
    """
    if target_mpp <= 0:
        raise ValueError(f"microns per pixel must be positive, got {target_mpp}")
    finest = level_mpps[0]
    if target_mpp < finest * (1 - tolerance):
        raise ValueError(
            f"the image's finest level has {finest:.3g} µm per pixel, so it cannot be explained "
            f"at {target_mpp:.3g} µm per pixel (that would need upsampling); use a model "
            f"trained at {finest:.3g} µm per pixel or coarser, or (slides) an --mpp of at "
            f"least {finest:.3g}"
        )
    level = max(i for i, mpp in enumerate(level_mpps) if mpp <= target_mpp * (1 + tolerance))
    ratio = target_mpp / level_mpps[level]
    return level, (ratio if ratio > 1 + tolerance else 1.0)


def sampling_for(
    downsamples: Sequence[Sequence[float]],
    slide_mpp: float | None,
    model_mpp: float | None,
    *,
    mpp: float | None = None,
    level: int | None = None,
) -> tuple[int, float]:
    """Return ``(level, resample)`` from an explicit level, an explicit mpp, or the model's.

    Parameters
    ----------
    downsamples : sequence of tuple of float
        Level-0 pixels per pixel of each level.
    slide_mpp : float or None
        Microns per level-0 pixel of the slide; without it, level 0 is read as it is.
    model_mpp : float or None
        Microns per pixel the model was trained at (its card).
    mpp : float, optional
        Explain at this many microns per pixel instead of the model's.
    level : int, optional
        Read this level as it is (overrides ``mpp``).
    """
    if level is not None:
        if not 0 <= level < len(downsamples):
            raise ValueError(
                f"the slide has levels 0 to {len(downsamples) - 1}; there is no level {level}"
            )
        return level, 1.0
    target = mpp if mpp is not None else model_mpp
    if target is None:
        return 0, 1.0
    if slide_mpp is None:
        if mpp is not None:
            raise ValueError(
                "the slide does not say its microns per pixel, so --mpp cannot be honoured; "
                "state the slide's with --slide-mpp, or choose a --level"
            )
        return 0, 1.0
    return choose_sampling([slide_mpp * d[-1] for d in downsamples], target)
