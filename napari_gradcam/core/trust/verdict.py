"""The trust report in plain words: what the checks found, and what to do next.

The numbers (rank correlations, areas under curves, entropy) stay in the report for the
details; these sentences say what they mean for someone reading a slide, and give one next
step per way a map can fail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from napari_gradcam.core.trust.report import TrustReport


def plain_verdict(report: TrustReport) -> str:
    """One or two sentences on whether the map follows the model, without numbers."""
    name = report.target_name
    if report.noise.blank:
        return "This tile holds almost no tissue: its map is not evidence for any class."
    if report.noise.flat:
        return f"The map is empty: the method found nothing here that speaks for {name}."
    scramble, hiding = _scramble_words(report), _hiding_words(report)
    if report.rating == "plausible":
        return f"This map follows the model: {scramble}, and {hiding}."
    if report.sanity.depends_on_weights and report.faithful:
        warning = report.noise.warnings[0]
        return f"This map follows the model ({scramble}, and {hiding}), but {warning}."
    opening = (
        "This map does not show the model's reasoning"
        if report.rating == "doubtful"
        else "This map only partly checks out"
    )
    return f"{opening}: {scramble}, and {hiding}."


def next_step(report: TrustReport) -> str:
    """One sentence on what to do next, for the most serious problem the report found."""
    name, sanity, faithful = report.target_name, report.sanity, report.faithful
    if report.noise.blank:
        return "Pan to a tile with tissue and run the report again."
    if report.noise.flat:
        layer = report.layer or "the input"
        return (
            f"Explain a class the model sees here, or try Grad-CAM at a deeper layer than {layer}."
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
    if faithful is None and report.probability < 0.5:
        return (
            f"The model does not call this tile {name} (probability "
            f"{report.probability:.2f}): explain the class it predicts, or pan to tissue it "
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
    if report.noise.warnings:
        return _noise_step(report)
    return (
        f"Read the hot areas as where the model found evidence for {name}; check a few more "
        "tiles before relying on it."
    )


def _scramble_words(report: TrustReport) -> str:
    depends = report.sanity.depends_on_weights
    if depends is True:
        return "it changes when the model's learned weights are scrambled"
    if depends is False:
        return "it barely changes when the model's learned weights are scrambled"
    return "the weight-scrambling test could not run"


def _hiding_words(report: TrustReport) -> str:
    score = "score" if report.faithfulness.measure == "logit" else "probability"
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
