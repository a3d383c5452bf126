"""The "Add hot regions" options of the annotations dock: a few meaningful regions by default.

By default the regions holding the top half of the map's heat are outlined, those closer than
``MERGE_UM`` merged, those smaller than ``MIN_AREA_UM2`` dropped, and at most ``MAX_REGIONS``
kept (the hottest). On the bundled H&E sample's demo map this gives 5 regions (127 with no
merging, no minimum area and no cap). The options are folded under "more options".
"""

from __future__ import annotations

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, SpinBox

from napari_gradcam.core.regions.hot_regions import hot_region_polygons
from napari_gradcam.core.regions.polygons import Polygon
from napari_gradcam.core.regions.region_stats import PlacedMap

MODES = (
    ("top share of heat", "energy"),
    ("share of the map's range", "fraction"),
    ("map value", "value"),
)
AMOUNT_TIP = (
    "top share of heat: outline the hottest areas that hold this share (0-1) of the map's "
    "heat; share of the map's range: 0-1 of the way from its coolest to its hottest value; "
    "map value: in the map's own units"
)
MIN_AREA_UM2 = 2000.0
"""Smallest region kept, µm² (about 45 x 45 µm)."""
MERGE_UM = 15.0
"""Regions closer than this (µm) become one."""
MAX_REGIONS = 8
UNKNOWN_MPP = 0.5
"""Microns per pixel assumed for an image without a pixel size (and said in the dock)."""


class HotRegionOptions(Container):
    """How hot regions are found; everything but the button is folded by default."""

    def __init__(self) -> None:
        super().__init__(labels=True)
        self.more = CheckBox(
            text="more options", value=False, tooltip="show how hot regions are found"
        )
        self.mode = ComboBox(label="hot by", choices=MODES, value="energy", tooltip=AMOUNT_TIP)
        self.amount = FloatSpinBox(
            label="amount", value=0.5, min=0, max=1e9, step=0.05, tooltip=AMOUNT_TIP
        )
        self.min_area = FloatSpinBox(
            label="smallest (µm²)",
            value=MIN_AREA_UM2,
            min=0,
            max=1e12,
            step=500,
            tooltip="regions smaller than this are left out",
        )
        self.merge = FloatSpinBox(
            label="merge within (µm)",
            value=MERGE_UM,
            min=0,
            max=1e6,
            step=5,
            tooltip="hot areas closer than this become one region",
        )
        self.max_regions = SpinBox(
            label="at most",
            value=MAX_REGIONS,
            min=1,
            max=100_000,
            tooltip="keep only this many regions: those holding the most heat",
        )
        self.advanced = Container(
            widgets=[self.mode, self.amount, self.min_area, self.merge, self.max_regions],
            labels=True,
            visible=False,
        )
        self.extend([self.more, self.advanced])
        self.more.changed.connect(lambda shown: setattr(self.advanced, "visible", shown))

    def describe(self) -> str:
        """The note given to each region added: how it was found."""
        return f"hot region ({self.mode.value} {self.amount.value:g})"

    def polygons(self, placed: PlacedMap, mpp: float | None) -> list[Polygon]:
        """The hot regions of ``placed`` in level-0 pixels (µm taken at ``UNKNOWN_MPP``)."""
        pixel_um = mpp or UNKNOWN_MPP
        return hot_region_polygons(
            placed.cam,
            placed.stride,
            placed.origin,
            mode=self.mode.value,
            amount=self.amount.value,
            min_area_px=self.min_area.value / pixel_um**2,
            merge_px=self.merge.value / pixel_um,
            max_regions=self.max_regions.value,
        )
