"""One quiet offer to give a user's Shapes or Points layer the units of the image under it.

napari warns "Inconsistent units across layers" each time the world's units are updated
while layers disagree (a new Shapes layer is in pixels, the H&E sample in micrometres), so a
mismatch shows many toasts. The plugin's own layers take the image's units; for a layer the
user adds, the dock shows one button that sets them.
"""

from __future__ import annotations

from magicgui.widgets import PushButton
from napari.layers import Image, Layer, Points, Shapes


def plane_units(layer: Layer) -> tuple[str, ...]:
    """The units of a layer's last two axes."""
    return tuple(str(unit) for unit in layer.units[-2:])


class UnitsOffer(PushButton):
    """A button, shown only while a drawing layer's units differ from its image's."""

    def __init__(self) -> None:
        super().__init__(text="", visible=False, tooltip="give the layer the image's units")
        self.layer: Layer | None = None
        self.image: Image | None = None
        self.changed.connect(self.apply)

    @property
    def offering(self) -> bool:
        """Whether the button is up (shown once the dock is)."""
        return not self.native.isHidden()

    def check(self, layer: Layer, image: Image | None) -> bool:
        """Offer to fix ``layer`` when it draws over ``image`` in other units; return whether."""
        differ = (
            isinstance(layer, Shapes | Points)
            and image is not None
            and plane_units(layer) != plane_units(image)
        )
        if differ:
            self.layer, self.image = layer, image
            units = " x ".join(dict.fromkeys(plane_units(image)))
            self.text = f"Use the image's units ({units}) for {layer.name!r}"
            self.tooltip = (
                f"{layer.name!r} is in {', '.join(plane_units(layer))} while {image.name!r} is in "
                f"{', '.join(plane_units(image))}: napari then ignores units and warns each "
                "time it redraws"
            )
        self.visible = differ
        return differ

    def apply(self) -> None:
        """Give the offered layer its image's units."""
        layer, image = self.layer, self.image
        self.visible = False
        self.layer = self.image = None
        if layer is not None and image is not None:
            layer.units = (*tuple(layer.units[:-2]), *plane_units(image))
