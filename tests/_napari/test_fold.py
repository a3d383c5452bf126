"""A fold shows or hides its body when its title is clicked, and starts as asked."""

from magicgui.widgets import Label

from napari_gradcam._napari.fold import CLOSED, OPEN, Fold


def test_a_fold_starts_closed_and_opens_and_closes_on_click(qtbot) -> None:
    inner = Label(value="the numbers")
    fold = Fold("details", [inner], tooltip="the numbers behind the verdict")
    qtbot.addWidget(fold.native)
    fold.native.show()
    assert not fold.expanded and fold.body.native.isHidden() and not inner.native.isVisible()
    assert fold.toggle.text == f"{CLOSED} details"
    assert fold.toggle.tooltip == "the numbers behind the verdict"
    fold.toggle.clicked.emit()
    assert fold.expanded and inner.native.isVisible() and fold.toggle.text == f"{OPEN} details"
    fold.toggle.clicked.emit()
    assert not fold.expanded and not inner.native.isVisible()


def test_a_fold_can_start_open_with_a_default_tooltip(qtbot) -> None:
    fold = Fold("advanced options", [Label(value="x")], expanded=True)
    qtbot.addWidget(fold.native)
    assert fold.expanded and not fold.body.native.isHidden()
    assert fold.toggle.tooltip == "show or hide the advanced options"
