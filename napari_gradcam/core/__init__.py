"""The pure compute core: torch + numpy + scikit-image only (no napari, no Qt).

Modules that need torch import it themselves; this package imports nothing eagerly.
"""
