"""One report on whether a map can be trusted: noise, sanity and faithfulness together.

Bundles the noise indicators (``quality``), the cascading randomisation test of Adebayo et al.
(NeurIPS 2018, ``sanity``) and the deletion/insertion curves of Petsiuk et al. (BMVC 2018,
``faithfulness``) against a random order of the same granularity, and says what they mean
(in plain words and with a next step: ``verdict``).

The curves follow the target's probability, as in the paper. A confident model's softmax is
saturated: the probability stays near 1 whatever is hidden, the curves are flat and cannot
rank the map against chance. Then (and only for a class the model calls, p >= 0.5) both the
map's and the random order's curves are redrawn on the class's logit, which still moves. A
target without a probability (a prompt's or a region's similarity) is followed by its score.
Every kind of target is checked: the one the map explains is held fixed throughout.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.explain.explanation import Explanation
from napari_gradcam.core.explain.inputs import model_batch, model_parts
from napari_gradcam.core.explain.pipeline import explain
from napari_gradcam.core.output_files import finite_or_null
from napari_gradcam.core.progress import Progress, run_to_end
from napari_gradcam.core.settings import ExplainSettings
from napari_gradcam.core.tiling.tissue import is_rgb, tissue_mask
from napari_gradcam.core.trust.faithfulness import Baseline, FaithfulnessCurves, deletion_insertion
from napari_gradcam.core.trust.quality import NoiseIndicators, noise_indicators
from napari_gradcam.core.trust.sanity import SanityCheck, fixed_target, sanity_check

MEASURE_WORDS = {"probability": "p", "logit": "logit", "score": "score"}
"""How a curve's measure is written before the target's name: ``p(tumour)``."""
STAGES = 4
"""Steps :func:`iter_trust_report` yields before it returns."""
MIN_CURVE_SPAN = 0.05
"""Faithfulness is judged only when the target's probability moves at least this much along
the deletion and insertion curves; otherwise nothing the map ranks changes the decision."""
MIN_LOGIT_SPAN = 1.0
"""The same for curves drawn on the logit (saturated probability): one unit of logit is the
odds of the class changing e-fold."""
MIN_SCORE_SPAN = 0.01
"""The same for a target's score without a probability: a cosine similarity (CLIP-style
models keep an image's similarities to prompts within a few hundredths of each other)."""


@dataclass(frozen=True)
class TrustReport:
    """Everything measured about one map, and what it means.

    Attributes
    ----------
    method, layer : str
        What made the map.
    target : int or None
        The explained class (``None``: a target that is not one class).
    target_name : str
        The target in words.
    probability : float
        The model's probability for it (NaN for a similarity).
    noise : NoiseIndicators
        Tissue share, energy on tissue, entropy, neighbour correlation, blank/flat flags.
    sanity : SanityCheck
        Spearman and SSIM per cascade step, and the verdict.
    faithfulness : FaithfulnessCurves
        Deletion and insertion curves in the map's order (on the logit when the probability
        is saturated: ``faithfulness.measure``).
    random_order : FaithfulnessCurves
        The same curves for a random map of the same size (the chance level).
    findings : tuple of str
        Plain-language conclusions, the most important first.
    score : float
        The target's score (its logit, or its similarity).
    """

    method: str
    layer: str
    target: int | None
    target_name: str
    probability: float
    noise: NoiseIndicators
    sanity: SanityCheck
    faithfulness: FaithfulnessCurves
    random_order: FaithfulnessCurves
    findings: tuple[str, ...]
    score: float = float("nan")

    @property
    def curve_range(self) -> tuple[float, float]:
        """Lowest and highest target probability (or logit) along all four curves."""
        curves = [
            getattr(c, name)
            for c in (self.faithfulness, self.random_order)
            for name in ("deletion", "insertion")
        ]
        return float(min(c.min() for c in curves)), float(max(c.max() for c in curves))

    @property
    def faithful(self) -> bool | None:
        """Deletion hurts and insertion helps faster in the map's order than in a random one.

        ``None`` when the curves hardly move (less than ``MIN_CURVE_SPAN``, or
        ``MIN_LOGIT_SPAN`` on the logit): the class's score stays put whatever is replaced, so
        there is nothing to judge.
        """
        low, high = self.curve_range
        if high - low < _min_span(self.faithfulness.measure):
            return None
        ours, chance = self.faithfulness, self.random_order
        return ours.deletion_auc < chance.deletion_auc and ours.insertion_auc > chance.insertion_auc

    @property
    def rating(self) -> str:
        """One word: ``blank tile``, ``flat map``, ``doubtful``, ``mixed`` or ``plausible``.

        ``plausible`` needs every check to pass: the sanity check ran and the map depends on
        the weights, both curves moved and beat chance, and no noise indicator warns.
        """
        if self.noise.blank:
            return "blank tile"
        if self.noise.flat:
            return "flat map"
        if self.sanity.depends_on_weights is False or self.faithful is False:
            return "doubtful"
        checked = self.sanity.depends_on_weights is True and self.faithful is True
        return "plausible" if checked and not self.noise.warnings else "mixed"

    @property
    def verdict(self) -> str:
        """Whether the map follows the model, in one or two plain sentences (no numbers)."""
        name = self.target_name
        if self.noise.blank:
            return "This tile holds almost no tissue: its map is not evidence for any class."
        if self.noise.flat:
            return f"The map is empty: the method found nothing here that speaks for {name}."
        scramble, hiding = _scramble_words(self), _hiding_words(self)
        if self.rating == "plausible":
            return f"This map follows the model: {scramble}, and {hiding}."
        if self.sanity.depends_on_weights and self.faithful:
            warning = self.noise.warnings[0]
            return f"This map follows the model ({scramble}, and {hiding}), but {warning}."
        opening = (
            "This map does not show the model's reasoning"
            if self.rating == "doubtful"
            else "This map only partly checks out"
        )
        return f"{opening}: {scramble}, and {hiding}."

    @property
    def next_step(self) -> str:
        """One sentence on what to do next, for the most serious problem the report found."""
        name, sanity, faithful = self.target_name, self.sanity, self.faithful
        if self.noise.blank:
            return "Pan to a tile with tissue and run the report again."
        if self.noise.flat:
            layer = self.layer or "the input"
            return (
                "Explain a class the model sees here, or try Grad-CAM at a deeper layer than "
                f"{layer}."
            )
        if sanity.depends_on_weights is False:
            return (
                "The map barely changes when the weights are randomised: it shows edges and stain, "
                "not the model's reasoning; use Grad-CAM at the last convolutional layer (or a "
                "deeper layer), or scramble more layers (advanced options) for a stricter test."
            )
        if faithful is False:
            return (
                "Hiding the hot areas does not lower the score more than hiding random ones: try "
                "a deeper layer, or compare methods side by side to find one that does."
            )
        if faithful is None and self.faithfulness.measure == "score":
            return (
                f"Hiding pixels hardly moves the score of {name}: the whole tile scores alike; "
                "try the tissue-mean baseline (advanced options) or a tile with more contrast."
            )
        if faithful is None and self.probability < 0.5:
            return (
                f"The model does not call this tile {name} (probability "
                f"{self.probability:.2f}): explain the class it predicts, or pan to tissue it "
                f"calls {name}."
            )
        if faithful is None:
            return (
                f"The model keeps calling this tile {name} whatever is hidden, so it decides from "
                "what every pixel shares (such as the stain): try the tissue-mean baseline "
                "(advanced options) or a tile where the model is less certain."
            )
        if sanity.depends_on_weights is None:
            return f"The scramble test could not run ({_reason(sanity.verdict)})."
        if self.noise.warnings:
            return _noise_step(self)
        return (
            f"Read the hot areas as where the model found evidence for {name}; check a few more "
            "tiles before relying on it."
        )

    @property
    def headline(self) -> str:
        """One line: rating, class, sanity and the two AUCs against chance."""
        ours, chance = self.faithfulness, self.random_order
        sanity = self.sanity.verdict.split(":")[0]
        return (
            f"{self.rating}: {self.target_name} {_value_words(self)}, {self.method} at "
            f"{self.layer or 'the input'}; sanity {sanity}; deletion AUC {ours.deletion_auc:.2f} "
            f"(random {chance.deletion_auc:.2f}), insertion AUC {ours.insertion_auc:.2f} "
            f"(random {chance.insertion_auc:.2f})"
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON built-ins (arrays become lists, non-finite numbers None)."""
        return {
            **finite_or_null(asdict(self)),
            "rating": self.rating,
            "headline": self.headline,
            "verdict": self.verdict,
            "next_step": self.next_step,
        }


def trust_report(
    model: object, image: np.ndarray, explanation: Explanation | None = None, **options: Any
) -> TrustReport:
    """Measure one map; the arguments are those of :func:`iter_trust_report`.

    Examples
    --------
    >>> report = trust_report(ng.load_model("demo"), tile)  # doctest: +SKIP
    >>> report.rating, report.sanity.verdict, report.noise.blank  # doctest: +SKIP
    """
    return run_to_end(iter_trust_report(model, image, explanation, **options))


def iter_trust_report(
    model: object,
    image: np.ndarray,
    explanation: Explanation | None = None,
    *,
    settings: ExplainSettings | None = None,
    card: ModelCard | None = None,
    sanity_steps: int = 3,
    curve_steps: int = 16,
    baseline: Baseline = "blur",
    seed: int = 0,
) -> Generator[Progress, None, TrustReport]:
    """Measure one map stage by stage, yielding a step after each of :data:`STAGES`.

    Parameters
    ----------
    model : torch.nn.Module or LoadedModel
        The classifier.
    image : numpy.ndarray
        The explained pixels (H, W[, C]) (tissue is measured on RGB pixels only).
    explanation : Explanation, optional
        The map of ``image`` to check; default: made here with ``settings``.
    settings : ExplainSettings, optional
        How the map is made (when not given) and remade on the randomised models (its
        method's options; the method, layer and class are the map's); default: Grad-CAM.
    sanity_steps : int
        Parameter layers re-initialised in the cascade, from the output backwards.
    curve_steps : int
        Steps of the deletion and insertion curves.
    baseline : {"blur", "tissue-mean"}
        What deleted pixels become.
    seed : int
        Seed of the re-initialisation, the tie-breaking and the random reference order.
    """
    module, card = model_parts(model, card)
    settings = settings or ExplainSettings()
    image = np.asarray(image)
    batch = model_batch(module, image, card)
    if explanation is None:
        explanation = explain(model, batch, settings, card=card)
    cam = _single_map(explanation, image)
    noise = noise_indicators(cam, image, explanation.stride)
    yield Progress(1, STAGES, "noise indicators measured")
    sanity = sanity_check(
        model, batch, explanation, settings, card=card, steps=sanity_steps, seed=seed
    )
    yield Progress(2, STAGES, "sanity check done")
    tissue = tissue_mask(image) if is_rgb(image) else None
    held = fixed_target(explanation, settings.target, card)
    curves = dict(target=held, card=card, baseline=baseline, tissue=tissue, steps=curve_steps)
    ours = deletion_insertion(model, batch, cam, seed=seed, **curves)
    if _saturated(ours, float(explanation.probabilities[0])):
        curves["measure"] = "logit"
        ours = deletion_insertion(model, batch, cam, seed=seed, **curves)
    yield Progress(3, STAGES, "deletion and insertion curves drawn")
    noise_map = np.random.default_rng(seed).random(cam.shape)
    chance = deletion_insertion(model, batch, noise_map, seed=seed, **curves)
    yield Progress(4, STAGES, "random-order reference drawn")
    return _report(explanation, noise, sanity, ours, chance)


def _min_span(measure: str) -> float:
    """How far the curves must move to be judged, in their measure's unit."""
    return {"logit": MIN_LOGIT_SPAN, "score": MIN_SCORE_SPAN}.get(measure, MIN_CURVE_SPAN)


def _value_words(report: TrustReport) -> str:
    """``p=0.93``, or the score of a target without a probability (``score 0.31``)."""
    if np.isfinite(report.probability):
        return f"p={report.probability:.2f}"
    return f"score {report.score:.2f}"


def _saturated(curves: FaithfulnessCurves, probability: float) -> bool:
    """Whether probability curves of a class the model calls stay flat (softmax saturated)."""
    values = np.concatenate([curves.deletion, curves.insertion])
    return probability >= 0.5 and float(np.ptp(values)) < MIN_CURVE_SPAN


def _single_map(explanation: Explanation, image: np.ndarray) -> np.ndarray:
    """The (h, w) map of ``explanation``, checked to belong to ``image``."""
    if explanation.cam.ndim == 3 and explanation.cam.shape[0] != 1:
        raise ValueError("a trust report checks one map; give the explanation of one image")
    if tuple(explanation.input_shape) != tuple(image.shape[:2]):
        raise ValueError(
            f"the explanation was made on a {explanation.input_shape} input, not on this "
            f"{image.shape[:2]} image; give the pixels that were explained"
        )
    return np.asarray(explanation.cam, dtype=np.float32).reshape(explanation.cam.shape[-2:])


def _report(
    explanation: Explanation,
    noise: NoiseIndicators,
    sanity: SanityCheck,
    ours: FaithfulnessCurves,
    chance: FaithfulnessCurves,
) -> TrustReport:
    report = TrustReport(
        method=explanation.method,
        layer=explanation.layer,
        target=sanity.target,
        target_name=explanation.target_names[0],
        probability=float(explanation.probabilities[0]),
        noise=noise,
        sanity=sanity,
        faithfulness=ours,
        random_order=chance,
        findings=(),
        score=float(explanation.scores[0]),
    )
    return replace(report, findings=_findings(report))


def _findings(report: TrustReport) -> tuple[str, ...]:
    """The report's conclusions in words: blank tile first, then sanity, faithfulness, noise."""
    warnings = list(report.noise.warnings)
    first = [warnings.pop(0)] if report.noise.blank else []
    return (*first, f"sanity check {report.sanity.verdict}", _faithfulness(report), *warnings)


def _faithfulness(report: TrustReport) -> str:
    """The deletion/insertion finding in words."""
    ours, chance = report.faithfulness, report.random_order
    score = f"{MEASURE_WORDS[ours.measure]}({report.target_name})"
    if report.faithful is None:
        low, high = report.curve_range
        advice = (
            "the image scores alike wherever it is hidden"
            if ours.measure == "score"
            else "explain a class the model gives this image"
            if report.probability < 0.5
            else f"the {ours.baseline} baseline alone keeps the class, so the "
            "decision rests on what every pixel shares (such as the stain), not on a region"
        )
        return (
            f"faithfulness cannot be judged: {score} stays within "
            f"{low:.2f}-{high:.2f} whatever pixels are replaced, so the map's order changes "
            f"nothing the model decides; {advice}"
        )
    saturated = (
        f" (on the logit: p({report.target_name}) is saturated at "
        f"{report.probability:.2f} and would not move)"
        if ours.measure == "logit"
        else ""
    )
    deletes = "faster" if ours.deletion_auc < chance.deletion_auc else "no faster"
    inserts = "faster" if ours.insertion_auc > chance.insertion_auc else "no faster"
    return (
        f"faithfulness {'passes' if report.faithful else 'fails'}{saturated}: deleting the "
        f"pixels the map ranks highest lowers {score} {deletes} than a random order "
        f"(deletion AUC {ours.deletion_auc:.2f} vs {chance.deletion_auc:.2f}) and restoring "
        f"them first raises it {inserts} (insertion AUC {ours.insertion_auc:.2f} vs "
        f"{chance.insertion_auc:.2f}; {ours.baseline} baseline)"
    )


def _scramble_words(report: TrustReport) -> str:
    depends = report.sanity.depends_on_weights
    if depends is True:
        return "it changes when the model's learned weights are scrambled"
    if depends is False:
        return "it barely changes when the model's learned weights are scrambled"
    return "the weight-scrambling test could not run"


def _hiding_words(report: TrustReport) -> str:
    score = "probability" if report.faithfulness.measure == "probability" else "score"
    lowers = f"hiding its hot areas lowers the {score} of {report.target_name}"
    if report.faithful is True:
        return f"{lowers} faster than hiding random areas"
    if report.faithful is False:
        return f"{lowers} no faster than hiding random areas"
    return "hiding pixels hardly changes the model's call, so it cannot say whether they matter"


def _noise_step(report: TrustReport) -> str:
    """The next step for a map whose checks pass but whose shape warns."""
    indicators = report.noise
    if any("glass" in w for w in indicators.warnings):
        return (
            "The map lies mostly off the tissue: check a tile with more tissue, or another method."
        )
    if any("speckled" in w for w in indicators.warnings):
        return (
            "The map is speckled like noise: compare methods side by side, or try another "
            "layer, before reading single spots."
        )
    return (
        f"The map is spread evenly over the tile: expected when the whole tile is "
        f"{report.target_name}; to see which parts matter most, check a tile at the edge of "
        "the lesion or try a deeper layer."
    )


def _reason(verdict: str) -> str:
    """The reason of a ``"not checked: ..."`` sanity verdict."""
    return verdict.split(":", 1)[-1].strip()
