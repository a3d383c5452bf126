"""The command line: ``napari-gradcam SUBCOMMAND ...`` (see ``napari_gradcam.commands``)."""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = ("explain", "demo", "slide", "similarity")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="napari-gradcam", description="See what a PyTorch image classifier looked at."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"napari_gradcam.commands.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    from napari_gradcam.models.code_trust import UntrustedCodeError

    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, FileExistsError, UntrustedCodeError) as err:
        print(f"napari-gradcam: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 -- a bug: logged with its traceback, file named
        from napari_gradcam.user_state import unexpected_error_message

        context = f"running `napari-gradcam {args.command}`"
        print(f"napari-gradcam: error: {unexpected_error_message(err, context)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
