"""Typed progress of a long run, and the one helper that drives a run to its result.

Every pipeline (a tiled explanation, a slide's MIL run, a trust report, a slide's embeddings) is a
generator: it yields :class:`Progress` events (and events of its own, e.g. map rows to draw) and
returns its result. The CLI shows the events with a progress bar, the docks hand them to their job
runner, and :func:`run_to_end` runs one where nobody watches. No torch here.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

Result = TypeVar("Result")


@dataclass(frozen=True)
class Progress:
    """One step of a run: ``step`` of ``total`` done, and what is happening."""

    step: int
    total: int
    message: str


def run_to_end(
    run: Generator[Any, None, Result], on_event: Callable[[Any], None] | None = None
) -> Result:
    """Drive ``run`` to its end and return its result, passing each event to ``on_event``."""
    while True:
        try:
            event = next(run)
        except StopIteration as finished:
            return finished.value
        if on_event is not None:
            on_event(event)
