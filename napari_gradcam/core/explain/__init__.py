"""Explain one image: capture (hooks, layouts), methods, targets, preprocessing, ``explain()``."""
