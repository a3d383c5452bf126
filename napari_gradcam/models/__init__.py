"""Model specs, model cards, the bundled demo models and the loader (``loading.load_model``)."""
