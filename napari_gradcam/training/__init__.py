"""Reproducible training of the bundled demo model on stain-derived labels."""
