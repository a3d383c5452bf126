"""GUI-free review code: autosaves, review sessions and report figures (no napari, no Qt)."""
