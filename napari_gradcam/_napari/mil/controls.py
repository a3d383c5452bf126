"""The dock's option controls: card, class, scores and the CLAM-style options.

No torch here: the card's classes are read from its JSON alone. The headless run's options
(``slides.mil_runner.MilJob``'s fields) come from these controls.
"""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import CheckBox, ComboBox, FileEdit, FloatSpinBox, SpinBox

from napari_gradcam.core.card import read_json_object

DEMO_CARD = Path(__file__).parents[2] / "models" / "demo" / "mil_demo.json"
"""The bundled demo slide-model card (``models/demo/mil_demo.json``)."""
DEMO, OWN_CARD, PREDICTED = "demo (bundled)", "your own card (below)", "predicted"
ATTENTION, GRADIENT, IG = "attention", "grad_x_embedding", "integrated_gradients"
"""The score names of ``slides.mil_scores`` (named here to keep torch out of start-up)."""


def slide_card_classes(card: str | Path | None) -> tuple[str, ...]:
    """The classes a card names, or none when it cannot be read (the run says why)."""
    if not card:
        return ()
    try:
        classes = read_json_object(Path(card).expanduser(), "the slide-model card")["classes"]
    except (OSError, ValueError, KeyError):
        return ()
    return tuple(str(c) for c in classes) if isinstance(classes, list) else ()


class MilControls:
    """The option widgets of the dock, and the options they set."""

    def __init__(self) -> None:
        self.bundled = ComboBox(
            label="slide model",
            choices=(DEMO, OWN_CARD),
            tooltip="the bundled demo (a small ABMIL on the CC0 slide) or your own card",
        )
        self.card = FileEdit(label="card", mode="r", filter="*.json", value=str(DEMO_CARD))
        self.card.tooltip = "slide-model card (.json): encoder, aggregator, tile size, mpp"
        self.target = ComboBox(
            label="class",
            choices=self._class_choices,
            tooltip="class whose slide logit is explained; predicted: the top class",
        )
        self.attention = CheckBox(
            text="attention (where it looked)",
            value=True,
            tooltip="how much weight the model gave each tile; not for or against the class",
        )
        self.gradient = CheckBox(
            text="tile score: gradient x embedding (for / against)",
            value=True,
            tooltip="how much each tile pushed the slide towards (for) or away from (against) "
            "the class; fast",
        )
        self.ig = CheckBox(
            text="tile score: integrated gradients (for / against)",
            value=True,
            tooltip="the same push, integrated from a baseline bag; slower; the scores add up "
            "to the logit's change from the baseline",
        )
        self.baseline = ComboBox(
            label="IG baseline",
            choices=("zero", "mean"),
            tooltip="zero embeddings, or every tile the bag's mean embedding",
        )
        self.rank_by = ComboBox(
            label="rank tiles by",
            choices=(GRADIENT, IG, ATTENTION),
            tooltip="the score that orders the table of top tiles",
        )
        self.percentile = CheckBox(
            text="percentile scores (CLAM-style)",
            value=False,
            tooltip="paint each tile's rank among the slide's tiles instead of its raw score",
        )
        self.overlap = FloatSpinBox(
            label="overlap",
            min=0.0,
            max=0.75,
            step=0.25,
            value=0.0,
            tooltip="share of a tile overlapping its neighbour (0: tiles as the model was trained)",
        )
        self.blur = FloatSpinBox(
            label="blur (tiles)",
            min=0.0,
            max=10.0,
            step=0.5,
            value=0.0,
            tooltip="Gaussian smoothing of the maps, sigma in tiles",
        )
        self.top_k = SpinBox(label="top tiles", min=1, max=100, value=8, tooltip="rows per side")
        self.bundled.changed.connect(self._on_bundled)
        self.card.changed.connect(self._on_card)
        self.ig.changed.connect(lambda on: setattr(self.baseline, "visible", on))

    @property
    def widgets(self) -> list:
        """The main widgets, in the dock's order."""
        return [self.bundled, self.card, self.target, self.attention, self.gradient, self.ig]

    @property
    def advanced(self) -> list:
        """The widgets of the advanced options (the CLAM-style options), in the dock's order."""
        return [self.baseline, self.rank_by, self.percentile, self.overlap, self.blur, self.top_k]

    @property
    def card_path(self) -> str:
        """The card chosen (typed or picked)."""
        return str(self.card.value) if self.card.value else ""

    def scores(self) -> tuple[str, ...]:
        """The ticked scores."""
        ticked = ((ATTENTION, self.attention), (GRADIENT, self.gradient), (IG, self.ig))
        return tuple(name for name, box in ticked if box.value)

    def options(self, cache_dir: str | None = None) -> dict[str, object]:
        """The headless run's options (``slides.mil_runner.MilJob``'s fields)."""
        target = None if self.target.value == PREDICTED else self.target.value
        return {
            "card": self.card_path,
            "target": target,
            "overlap": float(self.overlap.value),
            "percentile": bool(self.percentile.value),
            "blur": float(self.blur.value),
            "baseline": str(self.baseline.value),
            "top_k": int(self.top_k.value),
            "cache_dir": cache_dir,
        }

    def _class_choices(self, _widget: ComboBox) -> tuple[str, ...]:
        return (PREDICTED, *slide_card_classes(self.card_path))

    def _on_bundled(self, choice: str) -> None:
        if choice == DEMO:
            self.card.value = str(DEMO_CARD)

    def _on_card(self) -> None:
        demo = Path(self.card_path).expanduser() == DEMO_CARD
        self.bundled.value = DEMO if demo else OWN_CARD
        self.target.reset_choices()
