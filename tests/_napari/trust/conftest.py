"""Fixtures shared by the trust dock's GUI tests (imported lazily: the timm env has no Qt)."""

import pytest


@pytest.fixture
def messages(monkeypatch) -> dict[str, list[str]]:
    """The errors and warnings the trust dock shows, collected instead of shown."""
    from napari_gradcam._napari.trust import widget as trust_module

    shown: dict[str, list[str]] = {"error": [], "warning": []}
    monkeypatch.setattr(trust_module, "show_error", shown["error"].append)
    monkeypatch.setattr(trust_module, "show_warning", shown["warning"].append)
    return shown
