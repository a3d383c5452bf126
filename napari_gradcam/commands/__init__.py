"""Subcommands of the ``napari-gradcam`` command line, one module each.

Each module defines ``add_parser(subparsers)``, which registers the subcommand and sets
``run`` (``args -> exit status``) as its default.
"""
