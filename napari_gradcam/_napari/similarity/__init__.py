"""The "Slide similarity" dock: a slide's tiles compared with a prompt or a region."""
