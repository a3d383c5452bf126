"""Typed progress of a long run, and the one helper that drives a run to its result.

Every pipeline (a tiled explanation, a slide's MIL run, a trust report, a slide's embeddings) is a
generator: it yields :class:`Progress` events (and events of its own, e.g. map rows to draw) and
returns its result. The CLI shows the events with a progress bar, the docks hand them to their job
runner, and :func:`run_to_end` runs one where nobody watches; :func:`relay` lets a driver that
runs another one say its events in its own words. No torch here.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from contextlib import closing
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
    """Drive ``run`` to its end and return its result, passing each event to ``on_event``.

    When ``on_event`` raises (e.g. a keyboard interrupt under a progress bar), ``run`` is closed
    first, so it cleans up as when a dock cancels it.
    """
    with closing(run):
        while True:
            try:
                event = next(run)
            except StopIteration as finished:
                return finished.value
            if on_event is not None:
                on_event(event)


def relay(
    run: Generator[Any, None, Result], change: Callable[[Any], Any]
) -> Generator[Any, None, Result]:
    """Yield what ``change`` makes of each event of ``run``; return ``run``'s result.

    An event that ``change`` turns into ``None`` is dropped.
    """
    finished: list[Result] = []

    def watched() -> Generator[Any, None, None]:
        finished.append((yield from run))

    with closing(watched()) as events:
        for event in events:
            changed = change(event)
            if changed is not None:
                yield changed
    return finished[0]
