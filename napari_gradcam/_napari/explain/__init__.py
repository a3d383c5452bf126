"""The Grad-CAM dock: controls, the explain job and its tiled branch."""
