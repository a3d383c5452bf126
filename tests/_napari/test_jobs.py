"""The job runner every dock uses: progress events, cancel, halt, and a dock closed mid-run."""

from __future__ import annotations

import threading

import pytest
from magicgui.widgets import Container, Label, ProgressBar

from napari_gradcam._napari.jobs import JobHooks, JobRunner
from napari_gradcam._napari.model_events import ModelInfo, ModelReady
from napari_gradcam.core.progress import Progress

TIMEOUT_MS = 30_000
INFO = ModelInfo("tiny", None, ("a", "b"), ("conv",))


class Record:
    """What the hooks were called with."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self.returned: list[object] = []
        self.stopped: list[str] = []
        self.running: list[bool] = []

    def hooks(self) -> JobHooks:
        return JobHooks(self.returned.append, self.events.append, self.stopped.append)


def gated_job(gate: threading.Event, steps: int = 3):
    """Yield a first step, wait for ``gate``, then the remaining steps; return "done"."""
    yield Progress(1, steps, "first")
    gate.wait(TIMEOUT_MS / 1000)
    for step in range(2, steps + 1):
        yield Progress(step, steps, f"step {step}")
    return "done"


@pytest.fixture
def record() -> Record:
    return Record()


@pytest.fixture
def dock(make_napari_viewer):
    """A docked container with a progress bar and a status label."""
    viewer = make_napari_viewer()
    progress, status = ProgressBar(min=0, max=1, value=0), Label(value="")
    widget = Container(widgets=[progress, status])
    viewer.window.add_dock_widget(widget, name="test")
    return viewer, widget, progress, status


def make_runner(dock, record: Record) -> JobRunner:
    _viewer, widget, progress, status = dock
    return JobRunner(
        widget.native, "test", progress=progress, status=status, on_running=record.running.append
    )


def test_progress_events_are_shown_and_handed_over_in_order(dock, record, qtbot):
    runner, (_, _, progress, status) = make_runner(dock, record), dock

    def job():
        yield Progress(0, 4, "loading")
        yield ModelReady(INFO)
        yield Progress(3, 4, "three of four")
        return "outcome"

    assert runner.start(job, hooks=record.hooks())
    assert runner.running and record.running == [True]
    qtbot.waitUntil(lambda: not runner.running, timeout=TIMEOUT_MS)
    assert record.events == [
        Progress(0, 4, "loading"),
        ModelReady(INFO),
        Progress(3, 4, "three of four"),
    ]
    assert (progress.max, progress.value, status.value) == (1, 1, "three of four")  # done
    assert record.returned == ["outcome"] and record.stopped == []
    assert record.running == [True, False]


def test_one_job_at_a_time(dock, record, qtbot):
    runner, gate = make_runner(dock, record), threading.Event()
    assert runner.start(gated_job, gate, hooks=record.hooks())
    assert not runner.start(gated_job, gate, hooks=Record().hooks())  # busy: nothing started
    gate.set()
    qtbot.waitUntil(lambda: not runner.running, timeout=TIMEOUT_MS)
    assert record.returned == ["done"]


def test_cancel_stops_between_steps_and_returns_nothing(dock, record, qtbot):
    runner, gate = make_runner(dock, record), threading.Event()
    runner.start(gated_job, gate, 5, hooks=record.hooks())
    qtbot.waitUntil(lambda: bool(record.events), timeout=TIMEOUT_MS)
    runner.cancel()
    assert dock[3].value == "cancelling..."
    gate.set()
    qtbot.waitUntil(lambda: not runner.running, timeout=TIMEOUT_MS)
    assert record.returned == [] and record.stopped == ["cancelled"]
    assert dock[3].value == "cancelled" and len(record.events) < 5


def test_a_halted_job_drops_its_outcome_and_says_why(dock, record, qtbot):
    runner, gate = make_runner(dock, record), threading.Event()
    runner.start(gated_job, gate, 1, hooks=record.hooks())  # nothing left to stop after the gate
    qtbot.waitUntil(lambda: bool(record.events), timeout=TIMEOUT_MS)
    runner.halt("the layer 'x' was removed")
    gate.set()
    qtbot.waitUntil(lambda: not runner.running, timeout=TIMEOUT_MS)
    assert record.returned == [] and record.stopped
    assert dock[3].value == "stopped: the layer 'x' was removed"


def test_closing_the_dock_mid_run_stops_the_job_and_adds_nothing(dock, record, qtbot):
    viewer, widget, _progress, status = dock
    runner, gate = make_runner(dock, record), threading.Event()
    runner.start(gated_job, gate, 4, hooks=record.hooks())
    qtbot.waitUntil(lambda: bool(record.events), timeout=TIMEOUT_MS)
    viewer.window.remove_dock_widget(widget.native)
    gate.set()
    qtbot.waitUntil(lambda: not runner.running, timeout=TIMEOUT_MS)
    assert record.returned == [] and record.events == [Progress(1, 4, "first")]
    assert status.value == "stopped: the test dock was closed"


def test_a_dock_closed_after_the_last_step_still_adds_nothing(dock, record, qtbot):
    viewer, widget, _progress, status = dock
    runner, gate = make_runner(dock, record), threading.Event()
    runner.start(gated_job, gate, 1, hooks=record.hooks())
    qtbot.waitUntil(lambda: bool(record.events), timeout=TIMEOUT_MS)
    viewer.window.remove_dock_widget(widget.native)
    gate.set()  # the job returns without yielding again
    qtbot.waitUntil(lambda: not runner.running, timeout=TIMEOUT_MS)
    assert record.returned == [] and status.value == "stopped: the test dock was closed"


def test_a_plain_function_runs_without_a_dock(record, qtbot):
    runner = JobRunner(on_running=record.running.append)
    runner.start(sum, [1, 2, 3], hooks=record.hooks())
    qtbot.waitUntil(lambda: not runner.running, timeout=TIMEOUT_MS)
    assert record.returned == [6] and record.running == [True, False]
