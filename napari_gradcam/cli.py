"""The command line: ``napari-gradcam explain IMAGE... --out DIR`` and ``napari-gradcam demo``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_gradcam.core.methods import METHODS


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for all subcommands."""
    parser = argparse.ArgumentParser(
        prog="napari-gradcam", description="See what a PyTorch image classifier looked at."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    explain = commands.add_parser("explain", help="write a heatmap, overlay and JSON per image")
    explain.add_argument("images", nargs="+", type=Path, help="TIFF/SVS, PNG, JPEG or .npy files")
    explain.add_argument(
        "--model", default="demo", help="demo | module:factory | file.py:factory | model.pt"
    )
    explain.add_argument("--weights", help="state dict for a factory model (loaded weights-only)")
    explain.add_argument("--card", help="model card JSON (default: beside the weights/model)")
    explain.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow unpickling a whole pickled model (runs code from the file: trusted files only)",
    )
    explain.add_argument(
        "--layer", help="module name to explain (default: the card's or the last conv)"
    )
    explain.add_argument("--target", help="class name or index (default: the predicted class)")
    explain.add_argument("--method", default="gradcam", choices=sorted(METHODS))
    explain.add_argument("--out", required=True, type=Path, help="output folder")
    explain.add_argument("--format", default="npy", choices=["npy", "tif"], help="raw map format")
    explain.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    explain.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    demo = commands.add_parser(
        "demo", help="open napari with a sample, the demo model and the dock"
    )
    demo.add_argument("--sample", default="he", choices=["he", "ihc"])
    demo.add_argument("--screenshot", type=Path, help="save the window after the heatmap and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from napari_gradcam._napari.demo import run_demo

        return run_demo(args.sample, str(args.screenshot) if args.screenshot else None)
    from napari_gradcam.batch import explain_files

    try:
        return explain_files(args)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"napari-gradcam: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
