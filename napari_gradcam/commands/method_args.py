"""The command-line options of the attention methods, shared by ``explain`` and ``slide``."""

from __future__ import annotations

import argparse

from napari_gradcam.core.explain.method_options import MethodOptions, check_options


def add_method_option_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--discard-ratio`` (rollout) and ``--attention-head`` (attention)."""
    parser.add_argument(
        "--discard-ratio",
        type=float,
        default=0.0,
        help="rollout: share of each row's weakest attention weights dropped per block "
        "(default 0, the paper's rollout)",
    )
    parser.add_argument(
        "--attention-head",
        type=int,
        help="attention: one head of the last block (default: the mean of the heads)",
    )


def method_options(args: argparse.Namespace) -> MethodOptions:
    """The options parsed from ``args``, refused (``ValueError``) for a method not taking them."""
    check_options(args.method, args.discard_ratio, args.attention_head)
    return MethodOptions(args.discard_ratio, args.attention_head)
