from collections.abc import Generator

import pytest

from napari_gradcam.commands.progress_bar import run_with_bar
from napari_gradcam.core.progress import Progress, relay, run_to_end


def counting(total: int, closed: list[bool]) -> Generator[Progress | str, None, int]:
    try:
        for step in range(1, total + 1):
            yield Progress(step, total, f"step {step}")
            yield f"event {step}"
    finally:
        closed.append(True)
    return total * 10


def test_run_to_end_passes_every_event_and_returns_the_result() -> None:
    events, closed = [], []
    assert run_to_end(counting(2, closed), events.append) == 20
    assert events == [Progress(1, 2, "step 1"), "event 1", Progress(2, 2, "step 2"), "event 2"]
    assert closed == [True]


def test_a_watcher_that_raises_closes_the_run() -> None:
    closed = []

    def interrupt(event: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_to_end(counting(3, closed), interrupt)
    assert closed == [True]  # cleaned up at once, as when a dock cancels


def test_relay_rewords_and_drops_events_and_keeps_the_result() -> None:
    def reword(event: Progress | str) -> Progress | None:
        return Progress(event.step, event.total + 1, "x") if isinstance(event, Progress) else None

    events, closed = [], []
    assert run_to_end(relay(counting(2, closed), reword), events.append) == 20
    assert events == [Progress(1, 3, "x"), Progress(2, 3, "x")]


def test_closing_a_relay_closes_the_run_it_relays() -> None:
    closed = []
    run = relay(counting(5, closed), lambda event: event)
    next(run)
    run.close()
    assert closed == [True]


def test_the_progress_bar_follows_the_steps(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_with_bar(counting(4, []), "slide.svs", "tile") == 40
    bar = capsys.readouterr().err
    assert "slide.svs" in bar and "4/4" in bar
