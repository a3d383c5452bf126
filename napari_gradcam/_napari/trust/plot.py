"""The trust report in the dock: deletion/insertion curves (matplotlib) and the verdict text."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from napari_gradcam.core.trust.report import TrustReport

RATING_COLOURS = {
    "blank tile": "#ff9f1c",
    "flat map": "#ff9f1c",
    "doubtful": "#ff5c5c",
    "mixed": "#f4d35e",
    "plausible": "#7bd389",
}
DELETION, INSERTION = "#ff7f50", "#4fc3f7"


class CurvesPlot(FigureCanvasQTAgg):
    """Deletion and insertion curves of a map (solid) and of a random order (dashed).

    Parameters
    ----------
    background, foreground : str
        Colours of the figure and its text (napari's theme).
    """

    def __init__(self, background: str = "#262930", foreground: str = "#f0f1f2") -> None:
        figure = Figure(figsize=(3.4, 2.3), dpi=100, layout="constrained", facecolor=background)
        super().__init__(figure)
        self._axes = figure.add_subplot()
        self._background, self._foreground = background, foreground
        self.setMinimumHeight(180)
        self.clear()

    def clear(self) -> None:
        """Show empty axes with a hint."""
        self._style("curves appear after a trust report")
        self.draw_idle()

    def show_report(self, report: TrustReport) -> None:
        """Draw the report's curves with their areas in the legend."""
        ours, chance = report.faithfulness, report.random_order
        self._style(f"p({report.target_name}) as pixels are replaced ({ours.baseline} baseline)")
        axes = self._axes
        axes.plot(
            ours.fractions, ours.deletion, color=DELETION, label=f"deletion {ours.deletion_auc:.2f}"
        )
        axes.plot(
            ours.fractions,
            ours.insertion,
            color=INSERTION,
            label=f"insertion {ours.insertion_auc:.2f}",
        )
        random = {"linestyle": "--", "alpha": 0.6}
        axes.plot(
            chance.fractions,
            chance.deletion,
            color=DELETION,
            **random,
            label=f"random {chance.deletion_auc:.2f}",
        )
        axes.plot(
            chance.fractions,
            chance.insertion,
            color=INSERTION,
            **random,
            label=f"random {chance.insertion_auc:.2f}",
        )
        legend = axes.legend(
            fontsize=7, title="AUC", title_fontsize=7, frameon=False, ncols=2, loc="best"
        )
        for text in (*legend.get_texts(), legend.get_title()):
            text.set_color(self._foreground)
        self.draw_idle()

    def _style(self, title: str) -> None:
        axes = self._axes
        axes.clear()
        axes.set_facecolor(self._background)
        axes.set_xlim(0, 1)
        axes.set_ylim(-0.02, 1.02)
        axes.set_title(title, fontsize=8, color=self._foreground)
        axes.set_xlabel("share of pixels, most salient first", fontsize=7, color=self._foreground)
        axes.set_ylabel("probability", fontsize=7, color=self._foreground)
        axes.tick_params(labelsize=7, colors=self._foreground)
        for spine in axes.spines.values():
            spine.set_color(self._foreground)


def verdict_html(report: TrustReport) -> str:
    """The rating in its colour, then every finding as a bullet (rich text for a QLabel)."""
    colour = RATING_COLOURS.get(report.rating, "#f0f1f2")
    items = "".join(f"<li>{escape(finding)}</li>" for finding in report.findings)
    return (
        f"<b style='color:{colour}'>{escape(report.rating.upper())}</b>: "
        f"{escape(report.target_name)} p={report.probability:.2f}, {escape(report.method)} at "
        f"{escape(report.layer or 'input')}<ul style='margin-left:-20px'>{items}</ul>"
    )


def details_text(report: TrustReport) -> str:
    """The numbers behind the verdict: Spearman / SSIM per cascade step, noise indicators."""
    from napari_gradcam.core.trust.cascade_units import unit_label  # torch is loaded by now

    steps = " > ".join(
        f"{unit_label(step.randomised[-1])} {_number(step.spearman)}/{_number(step.ssim)}"
        for step in report.sanity.steps
    )
    noise = report.noise
    return (
        f"Spearman/SSIM as layers are re-initialised: {steps or 'n/a'}\n"
        f"tissue {_percent(noise.tissue_fraction)}, energy on tissue "
        f"{_percent(noise.energy_on_tissue)}, entropy {noise.entropy:.2f}, "
        f"neighbour correlation {_number(noise.autocorrelation)}"
    )


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"
