"""The ``--trust-code`` option of the commands that read model recipes and slide-model cards."""

from __future__ import annotations

import argparse


def add_trust_code_argument(parser: argparse.ArgumentParser) -> None:
    """Register ``--trust-code`` (stored as ``args.trust_code``)."""
    parser.add_argument(
        "--trust-code",
        action="store_true",
        help="let a model recipe or slide-model card run code that does not ship with "
        "napari-gradcam or its model libraries (a module:function or file.py it names); "
        "only for files you trust",
    )
