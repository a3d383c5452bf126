"""The confirmation a dock shows before running code that a card names (see ``code_trust``).

The dialog names the card and its sha256, and every ``module:function``, ``file.py:function``
(with the file's sha256) or import it would run. "Trust and run" is never the default button.
The answer is remembered by the caller (``code_trust.remember``) for this exact file content.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtWidgets import QMessageBox, QWidget

if TYPE_CHECKING:
    from napari_gradcam.models.code_trust import CodeTrustRequest

TRUST_BUTTON = "Trust and run"
DECLINE_BUTTON = "Do not run"


def trust_dialog(request: CodeTrustRequest, parent: QWidget | None = None) -> QMessageBox:
    """The (not yet shown) confirmation for ``request``; "Do not run" is the default."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle("Run code named in a file?")
    box.setText(
        f"{request.source.name} names code that does not ship with napari-gradcam or the "
        "model libraries it supports. Loading it runs this code with your permissions:"
    )
    lines = "\n".join(f"• {ref.describe()}" for ref in request.references)
    box.setInformativeText(
        f"{lines}\n\nFile: {request.source}\nsha256: {request.sha256}\n\n"
        "Trust it only if you know where the file and its code come from. Your answer is "
        "remembered for this exact file content; a changed file is asked about again."
    )
    box.addButton(TRUST_BUTTON, QMessageBox.ButtonRole.AcceptRole)
    decline = box.addButton(DECLINE_BUTTON, QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(decline)
    box.setEscapeButton(decline)
    return box


def ask_to_trust(request: CodeTrustRequest, parent: QWidget | None = None) -> bool:
    """Show the confirmation (modal); True when the user chose "Trust and run"."""
    box = trust_dialog(request, parent)
    box.exec()
    clicked = box.clickedButton()
    return clicked is not None and clicked.text() == TRUST_BUTTON
