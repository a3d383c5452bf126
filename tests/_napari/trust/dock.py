"""Waiting for a dock's worker jobs in the trust dock's GUI tests."""

TIMEOUT_MS = 60_000


def wait(widget, qtbot, timeout_ms: int = TIMEOUT_MS) -> None:
    """Process Qt events until ``widget`` runs no job."""
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout_ms)


def click(button, widget, qtbot, timeout_ms: int = TIMEOUT_MS) -> None:
    """Click ``button`` and wait for the job it starts."""
    button.clicked.emit()
    wait(widget, qtbot, timeout_ms)
