"""``napari-gradcam demo``: napari with a sample, a bundled model and the Grad-CAM dock."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo", help="open napari with a sample, the demo model and the dock, and explain once"
    )
    parser.add_argument("--sample", default="he", choices=["he", "ihc"])
    parser.add_argument(
        "--model",
        default="demo",
        choices=["demo", "demo-vit"],
        help="bundled model: demo (small CNN) or demo-vit (small Vision Transformer)",
    )
    parser.add_argument(
        "--screenshot", type=Path, help="save the window after the heatmap and exit"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Open the demo; with ``--screenshot``, save the window once the heatmap is there."""
    from napari_gradcam._napari.demo import run_demo

    screenshot = str(args.screenshot) if args.screenshot else None
    return run_demo(args.sample, screenshot, model=args.model)
