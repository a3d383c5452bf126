"""The napari face of napari-gradcam: dock widget, sample data and demo.

Nothing here imports torch at import time; the widget's worker imports it when it runs.
"""
