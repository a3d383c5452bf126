"""Does the map depend on what the model learned? Cascading model-parameter randomisation.

Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018: re-initialise the layers with
parameters one by one from the output backwards (cumulatively), recompute the map each time and
compare it with the original. A map that stays the same reflects the image or the architecture,
not the learned weights, and cannot explain the model's decision. A transformer is
re-initialised block by block from the top (``cascade_units``); its maps (patch grid, prefix
tokens dropped) are compared like any other.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy import stats
from skimage.metrics import structural_similarity
from torch import nn

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.explain.explanation import Explanation, normalize_cam
from napari_gradcam.core.explain.hooks import model_lock
from napari_gradcam.core.explain.pipeline import explain
from napari_gradcam.core.loaded_model import LoadedModel
from napari_gradcam.core.settings import ExplainSettings
from napari_gradcam.core.targets import Contrast, Target
from napari_gradcam.core.trust.cascade_units import (
    parameter_layers,
    reinitialise_unit,
    transformer_blocks,
    unit_label,
)

KEPT_CORRELATION = 0.5
"""Spearman rho at or above which a randomised map still ranks cells like the original (an
inverted map, rho near -1, points at other regions: it changed)."""


@dataclass(frozen=True)
class CascadeStep:
    """The map after re-initialising ``randomised`` (cumulative, from the output backwards).

    Attributes
    ----------
    randomised : tuple of str
        Names of every module re-initialised so far, the newest last.
    spearman : float or None
        Spearman rank correlation with the original map (``None``: a map is constant).
    ssim : float or None
        Structural similarity of the min-max normalised maps (``None``: map under 3 x 3).
    """

    randomised: tuple[str, ...]
    spearman: float | None
    ssim: float | None

    @property
    def kept(self) -> bool:
        """Whether the randomised map still ranks the cells like the original."""
        return self.spearman is not None and self.spearman >= KEPT_CORRELATION


@dataclass(frozen=True)
class SanityCheck:
    """The result of a cascading randomisation test.

    Attributes
    ----------
    method, layer : str
        What made the map.
    target : int or None
        The explained class (kept fixed while the weights change); ``None`` for a target
        that is not one class (several classes, a contrast, a prompt, an embedding, a
        region), which is kept fixed as given.
    steps : tuple of CascadeStep
        One entry per re-initialised module.
    depends_on_weights : bool or None
        Whether the map changed (``rho < 0.5``) once the cascade was complete; ``None``
        when it could not run (a constant map, a TorchScript model).
    verdict : str
        The finding in plain words.
    """

    method: str
    layer: str
    target: int | None
    steps: tuple[CascadeStep, ...]
    depends_on_weights: bool | None
    verdict: str


def compare_maps(original: np.ndarray, other: np.ndarray) -> tuple[float | None, float | None]:
    """Spearman rank correlation and SSIM of two maps of the same shape.

    SSIM is computed on min-max normalised maps (data range 1) with the largest odd window up
    to 7 cells that fits the map.
    """
    a, b = (np.asarray(m, dtype=np.float64) for m in (original, other))
    spearman = None
    if np.ptp(a) > 0 and np.ptp(b) > 0:
        spearman = float(stats.spearmanr(a.ravel(), b.ravel()).statistic)
    side = min(a.shape)
    window = min(7, side if side % 2 else side - 1)
    ssim = None
    if window >= 3:
        na, nb = normalize_cam(a), normalize_cam(b)
        ssim = float(structural_similarity(na, nb, win_size=window, data_range=1.0))
    return spearman, ssim


def sanity_check(
    model: object,
    batch: torch.Tensor,
    original: Explanation,
    settings: ExplainSettings | None = None,
    *,
    card: ModelCard | None = None,
    steps: int = 3,
    repeats: int = 3,
    seed: int = 0,
) -> SanityCheck:
    """Re-initialise the top ``steps`` parameter layers cumulatively and compare the maps.

    Parameters
    ----------
    model : torch.nn.Module or LoadedModel
        The trained classifier; it is not changed (the cascade runs on deep copies).
    batch : torch.Tensor
        The preprocessed input (1, C, H, W) that ``original`` explains.
    original : Explanation
        The map of the trained model (its method, layer and explained class are reused).
    settings : ExplainSettings, optional
        The settings that made ``original``: its method's options are reused, and its target
        when that is not a class (a prompt, an embedding, a region, several classes).
    steps : int
        How many units to re-initialise, from the output backwards: modules with parameters,
        or a transformer's whole blocks (``cascade_units.parameter_layers``).
    repeats : int
        Independent random cascades; each step reports the median over them (one random
        draw can, by chance, keep or flip a map).
    seed : int
        Seed of the first cascade's re-initialisation.
    """
    module = getattr(model, "module", model)
    reference = np.asarray(original.cam, dtype=np.float32).reshape(original.cam.shape[-2:])
    card = card or getattr(model, "card", None) or ModelCard()
    target = fixed_target(original, settings.target if settings is not None else None, card)
    explained = int(target[0]) if isinstance(target, tuple) else None
    unchecked = _unchecked_reason(module, reference)
    if unchecked:
        return SanityCheck(original.method, original.layer, explained, (), None, unchecked)
    names = parameter_layers(module, batch)[::-1][: max(1, steps)]
    options = settings.options if settings is not None else None
    remake = ExplainSettings(original.method, original.layer, target, options=options)
    runs = np.array(
        [
            _cascade(model, batch, reference, names, seed + 1000 * r, remake, card)
            for r in range(max(1, repeats))
        ]
    )
    results = [
        CascadeStep(tuple(names[: index + 1]), *map(_median, runs[:, index].T))
        for index in range(len(names))
    ]
    return SanityCheck(
        original.method,
        original.layer,
        explained,
        tuple(results),
        not results[-1].kept,
        _verdict(results),
    )


def fixed_target(original: Explanation, target: Target, card: ModelCard) -> Target:
    """The target to hold fixed while the model changes.

    A class target (by index or name, one per image, or ``None`` for the top class) becomes
    the classes ``original`` explained, and a contrast with the nearest class gets the class
    that was nearest in ``original``, so a randomised model is asked the same question; every
    other kind is kept as given (a prompt or an embedding means the same to any model).
    """
    if target is None or isinstance(target, (int, str, Sequence)):
        return tuple(int(t) for t in original.targets[:1])
    if isinstance(target, Contrast) and target.against is None and original.logits is not None:
        others = np.array(original.logits[0], dtype=np.float64)
        others[card.class_index(target.main)] = -np.inf
        return replace(target, against=int(others.argmax()))
    return target


def _unchecked_reason(module: nn.Module, reference: np.ndarray) -> str | None:
    """Why the cascade cannot say anything here, or ``None`` when it can run."""
    if isinstance(module, torch.jit.ScriptModule):
        return (
            "not checked: a TorchScript model cannot be re-initialised layer by layer; load "
            "the Python model with its weights to run this check"
        )
    if np.ptp(reference) == 0:
        return "not checked: the map is the same everywhere, so there is nothing to compare"
    return None


def _cascade(
    model: object,
    batch: torch.Tensor,
    reference: np.ndarray,
    names: list[str],
    seed: int,
    settings: ExplainSettings,
    card: ModelCard | None,
) -> list[tuple[float, float]]:
    """(Spearman, SSIM) after each cumulative re-initialisation of a deep copy; NaN for n/a.

    A ``LoadedModel`` keeps the rest of itself (its text tower: a prompt means the same to
    the randomised image model) around the randomised copy of its module.
    """
    module = getattr(model, "module", model)
    with model_lock(module):  # no other call changes its flags while it is copied
        randomised = copy.deepcopy(module)
    copied = replace(model, module=randomised) if isinstance(model, LoadedModel) else randomised
    blocks = transformer_blocks(randomised)
    scores = []
    for index, name in enumerate(names):
        reinitialise_unit(randomised, name, blocks, seed + index)
        cam = explain(copied, batch, settings, card=card).cam[0]
        scores.append(tuple(np.nan if v is None else v for v in compare_maps(reference, cam)))
    return scores


def _median(values: np.ndarray) -> float | None:
    """Median of the values that are not NaN, or ``None`` when none is."""
    finite = values[~np.isnan(values)]
    return float(np.median(finite)) if finite.size else None


def _verdict(steps: list[CascadeStep]) -> str:
    """Say in words whether the map depends on the learned weights."""
    last = steps[-1]
    scores = f"Spearman rho {_two_decimals(last.spearman)}, SSIM {_two_decimals(last.ssim)}"
    if last.kept:
        return (
            f"fails: the map barely changes when the top {len(steps)} layers with parameters "
            f"({_names(last.randomised)}) are re-initialised ({scores}); it follows the "
            "image's structure more than what these layers learned, so do not read it as the "
            "model's reasoning"
        )
    leading = next(index for index, step in enumerate(steps) if not step.kept)
    changing = unit_label(last.randomised[leading])
    if leading:
        return (
            f"passes, partly: the map ignores {_names(steps[leading - 1].randomised)} "
            f"but changes once {changing} is re-initialised too ({scores})"
        )
    return (
        f"passes: re-initialising {changing} already changes the map; after "
        f"{len(steps)} layers: {scores}; it depends on the learned weights"
    )


def _names(units: tuple[str, ...]) -> str:
    return ", ".join(unit_label(unit) for unit in units)


def _two_decimals(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
