"""The command line's method options, built from the methods' options dataclasses.

``explain`` and ``slide`` share them: one flag per option key (``--occlusion-window``,
``--discard-ratio``, ``--attention-head``, ...), read back into an ``ExplainSettings``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from napari_gradcam.core.explain.method_options import OptionSpec, option_specs
from napari_gradcam.core.explain.methods import METHODS, get_method
from napari_gradcam.core.settings import ExplainSettings

if TYPE_CHECKING:
    from napari_gradcam.core.targets import Target


def _options() -> dict[str, tuple[str, OptionSpec, tuple[str, ...]]]:
    """Each option key: its field name, spec and the methods that take it."""
    found: dict[str, tuple[str, OptionSpec, tuple[str, ...]]] = {}
    for method in METHODS.values():
        for name, spec in option_specs(method.options):
            owners = found[spec.key][2] if spec.key in found else ()
            found[spec.key] = (name, spec, (*owners, method.name))
    return found


def add_method_option_arguments(parser: argparse.ArgumentParser) -> None:
    """Add a flag per method option (default: the method's own default)."""
    for key, (_name, spec, owners) in _options().items():
        parser.add_argument(
            f"--{key.replace('_', '-')}",
            type=spec.kind,
            choices=spec.choices or None,
            help=f"{'/'.join(owners)}: {spec.help}",
        )


def explain_settings(args: argparse.Namespace, target: Target) -> ExplainSettings:
    """The settings parsed from ``args``; ``ValueError`` for an option the method does not take."""
    method = get_method(args.method)
    taken = {spec.key for _, spec in option_specs(method.options)}
    given = {}
    for key, (name, _spec, owners) in _options().items():
        value = getattr(args, key)
        if value is None:
            continue
        if key in taken:
            given[name] = value
        elif value != getattr(get_method(owners[0]).options(), name):
            users = " and ".join(owners)
            flag = f"--{key.replace('_', '-')}"
            raise ValueError(
                f"{flag} applies to method {users} only; {method.title} does not use it: drop "
                f"{flag} or choose --method {users}"
            )
    options = method.options(**given)
    return ExplainSettings(args.method, args.layer, target, args.tta, args.bf16, options)
