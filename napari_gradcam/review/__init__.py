"""GUI-free review code: autosaves, review sessions and report figures (the annotations dock's core)."""
