"""The trust report in the dock: deletion/insertion curves (matplotlib), verdict and details."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.legend import Legend

if TYPE_CHECKING:
    from napari_gradcam.core.trust.faithfulness import FaithfulnessCurves
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

    The gap between the map's curve and the random one is shaded: the wider it is, the more
    the map's order matters to the model. ``background`` and ``foreground`` are napari's
    theme colours for the figure and its text.
    """

    def __init__(self, background: str = "#262930", foreground: str = "#f0f1f2") -> None:
        figure = Figure(figsize=(3.4, 2.6), dpi=100, layout="constrained", facecolor=background)
        super().__init__(figure)
        self._axes = figure.add_subplot()
        self._legend: Legend | None = None
        self._background, self._foreground = background, foreground
        self.setMinimumHeight(210)
        self.setToolTip(
            "hide (deletion): the map's most important pixels are blurred away first; the "
            "score should fall faster than when random pixels are hidden (dashed). reveal "
            "(insertion): they are restored first into a blurred tile; the score should rise "
            "faster than for random pixels"
        )
        self.clear()

    def clear(self) -> None:
        """Show empty axes with a hint."""
        self._style("curves appear after a trust report", "score")
        self._axes.set_ylim(-0.02, 1.02)
        self.draw_idle()

    def show_report(self, report: TrustReport) -> None:
        """Draw the report's curves with their areas in the legend."""
        ours, chance = report.faithfulness, report.random_order
        logit = ours.measure == "logit"
        measure = "score (logit)" if logit else "probability"
        self._style(f"{measure} of {report.target_name} as pixels are hidden or revealed", measure)
        axes = self._axes
        for name, colour, mine, random in (
            ("hide", DELETION, ours.deletion, chance.deletion),
            ("reveal", INSERTION, ours.insertion, chance.insertion),
        ):
            area = _area(ours, name), _area(chance, name)
            axes.plot(
                ours.fractions, mine, color=colour, label=f"{name}, map order ({area[0]:.2f})"
            )
            axes.plot(
                chance.fractions,
                random,
                color=colour,
                linestyle="--",
                alpha=0.7,
                label=f"{name}, random order ({area[1]:.2f})",
            )
            axes.fill_between(ours.fractions, mine, random, color=colour, alpha=0.15, lw=0)
        if not logit:
            axes.set_ylim(-0.02, 1.02)
        self._legend = self.figure.legend(
            fontsize=6.5,
            frameon=False,
            loc="outside lower center",
            ncols=2,
            title="area under curve",
            title_fontsize=6.5,
        )  # below the axes: never over the curves
        for text in (*self._legend.get_texts(), self._legend.get_title()):
            text.set_color(self._foreground)
        self.draw_idle()

    def _style(self, title: str, measure: str) -> None:
        if self._legend is not None:
            self._legend.remove()
            self._legend = None
        axes = self._axes
        axes.clear()
        axes.set_facecolor(self._background)
        axes.set_xlim(0, 1)
        axes.set_title(title, fontsize=8, color=self._foreground)
        axes.set_xlabel(
            "share of pixels hidden or revealed, most important first",
            fontsize=7,
            color=self._foreground,
        )
        axes.set_ylabel(measure, fontsize=7, color=self._foreground)
        axes.tick_params(labelsize=7, colors=self._foreground)
        for spine in axes.spines.values():
            spine.set_color(self._foreground)


def _area(curves: FaithfulnessCurves, name: str) -> float:
    return curves.deletion_auc if name == "hide" else curves.insertion_auc


def verdict_html(report: TrustReport) -> str:
    """The rating in its colour, the verdict in plain words and the next step (rich text)."""
    colour = RATING_COLOURS.get(report.rating, "#f0f1f2")
    return (
        f"<b style='color:{colour}'>{escape(report.rating.upper())}</b> &nbsp;"
        f"{escape(report.target_name)} p={report.probability:.2f}, {escape(report.method)} at "
        f"{escape(report.layer or 'input')}<br>{escape(report.verdict, quote=False)}"
        f"<br><b>What next:</b> {escape(report.next_step, quote=False)}"
    )


def details_html(report: TrustReport) -> str:
    """The findings with their numbers, then the scramble steps and the map's shape."""
    from napari_gradcam.core.trust.cascade_units import unit_label  # torch is loaded by now

    steps = " &gt; ".join(
        f"{escape(unit_label(step.randomised[-1]))} {_number(step.spearman)} / {_number(step.ssim)}"
        for step in report.sanity.steps
    )
    noise = report.noise
    items = "".join(f"<li>{escape(finding, quote=False)}</li>" for finding in report.findings)
    return (
        f"<ul style='margin-left:-20px'>{items}</ul>"
        f"Scramble test, layers randomised from the output (rank correlation / structural "
        f"similarity with the original map; 1 = unchanged, under 0.5 = changed): "
        f"{steps or 'n/a'}<br>"
        f"Map shape: tissue {_percent(noise.tissue_fraction)} of the tile, "
        f"{_percent(noise.energy_on_tissue)} of the map on tissue, evenness (entropy) "
        f"{noise.entropy:.2f} (1 = the same everywhere), smoothness (neighbour correlation) "
        f"{_number(noise.autocorrelation)} (1 = smooth, 0 = speckled)"
    )


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"
