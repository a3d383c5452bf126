"""A method's own options: a frozen dataclass per method whose fields tell the faces how to ask.

Each method declares its options next to its implementation (``OcclusionOptions``,
``RolloutOptions``, ...), every field made by :func:`option`. The Explain dock, the command
line and the metadata read the fields' :class:`OptionSpec`, so adding an option touches the
method alone. No torch here: the docks build their controls at napari's start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class OptionSpec:
    """How the faces show one option.

    Attributes
    ----------
    label : str
        The dock's label.
    help : str
        The tooltip and the command line's help.
    key : str
        The name in metadata and JSON records; the command line's flag is ``--key`` with
        dashes (``attention_head``: ``--attention-head``).
    short : str
        The word in layer names (``"head"``: ``"... head 2"``).
    kind : type
        ``int``, ``float`` or ``str``.
    minimum, maximum, step : float, optional
        Bounds and step of a number.
    choices : tuple of str
        The values of a ``str`` option.
    none_label : str
        What ``None`` means, for an optional number (e.g. ``"auto"``, ``"mean of heads"``).
    count : str
        A ``ModelInfo`` attribute that bounds an index (``"heads"``), when the model knows it.
    """

    label: str
    help: str
    key: str
    short: str
    kind: type = float
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    none_label: str = ""
    count: str = ""


def option(default: Any, label: str, help: str, *, key: str, short: str = "", **spec: Any) -> Any:
    """A field of an options dataclass, with its :class:`OptionSpec` (``spec``: its fields)."""
    kind = spec.pop("kind", type(default) if default is not None else int)
    found = OptionSpec(label, help, key, short or label, kind, **spec)
    return field(default=default, metadata={"option": found})


@dataclass(frozen=True)
class NoOptions:
    """The options of a method that takes none."""


def option_specs(options_type: type) -> tuple[tuple[str, OptionSpec], ...]:
    """``(field name, spec)`` of every option of an options dataclass."""
    return tuple((f.name, f.metadata["option"]) for f in fields(options_type))


def options_to_facts(options: object) -> dict[str, Any]:
    """The options set to other than their defaults, by key (for metadata and JSON records)."""
    default = type(options)()
    return {
        spec.key: getattr(options, name)
        for name, spec in option_specs(type(options))
        if getattr(options, name) != getattr(default, name)
    }


def options_from_facts(options_type: type, facts: Mapping[str, Any]) -> Any:
    """Read the options from a record's facts (absent keys take their defaults)."""
    given = {
        name: None if facts[spec.key] is None else spec.kind(facts[spec.key])
        for name, spec in option_specs(options_type)
        if spec.key in facts
    }
    return options_type(**given)


def options_label(options: object) -> str:
    """A short description for layer names, e.g. ``"discard 0.9"``, ``"blocks all"``, ``""``."""
    specs = {spec.key: spec for _, spec in option_specs(type(options))}
    return " ".join(
        f"{specs[key].short} {_shown(value, specs[key])}"
        for key, value in options_to_facts(options).items()
    )


def _shown(value: Any, spec: OptionSpec) -> str:
    """An option's value as layer names show it (``None``: what it means)."""
    if value is None:
        return spec.none_label or "none"
    return f"{value:g}" if isinstance(value, float) else str(value)
