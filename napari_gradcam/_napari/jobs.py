"""One job runner for every dock: a worker thread, its progress, cancel, halt and dock watch.

A job is a function (or generator) that only computes: it runs in a napari thread worker and
yields typed events (``Progress``, ``ModelReady``, a tiled ``TiledUpdate``).
The runner shows the steps in the dock's progress bar and status label and hands every event
and the outcome to the dock on the main thread, where layers are touched. A job whose dock
was closed, or that was halted because a layer it needs is gone, adds nothing: its outcome is
dropped. A job that stops on a card naming untrusted code (``code_trust.UntrustedCodeError``)
asks the user, and runs again once the user trusts it. torch is imported only by the jobs
themselves, when they run.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from napari.qt.threading import WorkerBase, create_worker

from napari_gradcam._napari.docking import DockWatch
from napari_gradcam._napari.model_events import ModelInfo, ModelReady
from napari_gradcam.core.progress import Progress
from napari_gradcam.user_state import unexpected_error_message

if TYPE_CHECKING:
    from magicgui.widgets import Label, ProgressBar
    from qtpy.QtWidgets import QWidget
    from torch.nn import Module

    from napari_gradcam.core.loaded_model import LoadedModel
    from napari_gradcam.models.code_trust import CodeTrustRequest

USER_ERRORS = (ValueError, OSError, ImportError, SyntaxError)
"""Errors that mean "fix the input" (bad spec, file, region or pixels), not a bug.

``RuntimeError`` is not one: the core turns a model that fails on its input into a
``ValueError``, so a ``RuntimeError`` reaching a dock is a bug, logged with its traceback
(:meth:`JobRunner.start`)."""
CANCELLED, FAILED, STOPPED = "cancelled", "failed", "stopped"


def _ignore(*_args: object) -> None:
    """The default hook: nothing to do."""


@dataclass(frozen=True)
class Crashed:
    """What a job returns in place of its outcome when it raised: the exception."""

    error: Exception


def guarded(function: Callable[..., Any], *args: Any) -> Generator[Any, None, Any]:
    """Run ``function(*args)``, passing its events on; return an error as :class:`Crashed`.

    superqt drops a ``RuntimeError`` raised in a generator worker with only a warning: no
    ``errored``, no ``finished``, and the dock would wait forever. Returned, every error
    reaches the main thread, where it is logged with its traceback.
    """
    try:
        result = function(*args)
        if isinstance(result, Generator):
            result = yield from result
    except Exception as error:  # noqa: BLE001 (any error of a job is shown and logged)
        return Crashed(error)
    return result


@dataclass(frozen=True)
class JobHooks:
    """What a dock does with its job, each called on the main thread.

    Attributes
    ----------
    returned : callable
        Called with the job's outcome, unless the job was halted or its dock closed.
    event : callable
        Called with every yielded event (``Progress`` ones are shown by the runner first).
    stopped : callable
        Called with "cancelled", "failed" or "stopped" when the job ends without an outcome
        to show (e.g. to remove half-filled layers).
    errored : callable
        Called with the whole message after an unexpected exception was logged (see
        :meth:`JobRunner.failed`), after ``stopped("failed")``.
    """

    returned: Callable[[Any], None] = _ignore
    event: Callable[[Any], None] = _ignore
    stopped: Callable[[str], None] = _ignore
    errored: Callable[[str], None] = _ignore


class JobRunner:
    """Runs one job at a time for a dock.

    Parameters
    ----------
    widget : QWidget, optional
        The dock's widget; when it leaves its dock mid-run (the dock was closed) the job is
        halted and its outcome dropped. ``None``: the job belongs to no dock.
    dock_name : str
        The dock's name, for "stopped: the <name> dock was closed".
    progress, status : magicgui ProgressBar and Label, optional
        Show the steps; the status each step's message and how the job ended.
    on_running : callable, optional
        Called with True when a job starts and False when it has ended (enable buttons).
    """

    def __init__(
        self,
        widget: QWidget | None = None,
        dock_name: str = "",
        *,
        progress: ProgressBar | None = None,
        status: Label | None = None,
        on_running: Callable[[bool], None] = _ignore,
    ) -> None:
        self._widget = widget
        self._dock = DockWatch(widget) if widget is not None else None
        self._dock_name = dock_name
        self._progress = progress
        self._status = status
        self._on_running = on_running
        self._worker: WorkerBase | None = None
        self._hooks = JobHooks()
        self._halted: str | None = None
        self._settled = True
        self._job: tuple[Callable[..., Any], tuple[Any, ...]] | None = None
        self._untrusted: CodeTrustRequest | None = None

    @property
    def running(self) -> bool:
        """Whether a job is under way (until its worker has finished)."""
        return self._worker is not None

    @property
    def worker(self) -> WorkerBase | None:
        """The running job's worker, if any."""
        return self._worker

    def start(self, function: Callable[..., Any], *args: Any, hooks: JobHooks) -> bool:
        """Run ``function(*args)`` in a worker thread; False (nothing started) while busy."""
        if self.running:
            return False
        worker = create_worker(guarded, function, *args, _ignore_errors=True)
        worker.yielded.connect(self._on_yielded)
        worker.aborted.connect(lambda: self._stop(CANCELLED))
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._worker, self._hooks, self._job = worker, hooks, (function, args)
        self._halted, self._settled = None, False
        if self._dock is not None:
            self._dock.start()
        self._set_progress(0, 1)
        self._say("starting...")
        self._on_running(True)
        worker.start()
        return True

    def cancel(self) -> None:
        """Ask the job to stop after its current step; nothing it made is added."""
        if self._worker is not None:
            self._worker.quit()
            self._say("cancelling...")

    def halt(self, reason: str) -> None:
        """Stop the job because ``reason`` (e.g. a layer it needs is gone); drop its outcome."""
        if self._worker is not None:
            self._halted = f"stopped: {reason}"
            self.cancel()

    def dock_closed(self) -> bool:
        """Whether the dock was closed since the job started; then the job is halted."""
        if self._dock is not None and self._dock.closed:
            self.halt(f"the {self._dock_name} dock was closed")
            return True
        return False

    def _say(self, text: str) -> None:
        if self._status is not None:
            self._status.value = text

    def _widget_deleted(self) -> bool:
        """Whether the dock's Qt widget is gone (its window closed): nothing may touch it."""
        if self._widget is None:
            return False
        try:
            self._widget.objectName()
        except RuntimeError:  # "wrapped C/C++ object ... has been deleted"
            return True
        return False

    def _on_yielded(self, event: Any) -> None:
        if self._worker is None or self._worker.abort_requested or self._widget_deleted():
            return
        if self.dock_closed():
            return
        if isinstance(event, Progress):
            self._set_progress(event.step, event.total)
            self._say(event.message)
        self._hooks.event(event)

    def _on_returned(self, outcome: Any) -> None:
        if self._widget_deleted():
            self._settled = True
            return
        if isinstance(outcome, Crashed):
            self._on_errored(outcome.error)
            return
        if self._halted is not None or self.dock_closed():
            self._stop(STOPPED)
            return
        self._settled = True
        self._set_progress(1, 1)
        self._hooks.returned(outcome)

    def _on_errored(self, error: BaseException) -> None:
        """An exception no job turned into a message: a bug (logged, and where is said).

        A card naming untrusted code is no bug: the user is asked once the worker has ended.
        """
        from napari_gradcam.models.code_trust import UntrustedCodeError

        self._stop(FAILED)
        if isinstance(error, UntrustedCodeError):
            self._untrusted = error.request
            return
        self.failed(unexpected_error_message(error, f"running the {self._dock_name} job"))

    def failed(self, message: str) -> None:
        """Show a job's failure: the whole ``message`` in the status, and the dock's hook."""
        self._say(message)
        self._hooks.errored(message)

    def _set_progress(self, step: int, total: int) -> None:
        if self._progress is not None:
            self._progress.max = max(total, 1)
            self._progress.value = min(step, total)

    def _stop(self, how: str) -> None:
        self._settled = True
        self._set_progress(0, 1)
        self._say(self._halted or how)
        self._hooks.stopped(how)

    def _on_finished(self) -> None:
        if self._widget_deleted():
            self._worker = None
            return
        if not self._settled:  # stopped after its last step: neither returned nor aborted
            self.dock_closed()
            self._stop(CANCELLED)
        self._worker = None
        self._on_running(False)
        if self._untrusted is not None:
            self._ask_to_trust(self._untrusted)

    def _ask_to_trust(self, request: CodeTrustRequest) -> None:
        """Ask whether to run the code the card names; remember a yes and run the job again."""
        from napari_gradcam._napari.code_trust_dialog import ask_to_trust
        from napari_gradcam.models.code_trust import remember

        self._untrusted = None
        if self.dock_closed() or not ask_to_trust(request, self._widget):
            self._say(f"not run: the code named in {request.source.name} was not trusted")
            return
        try:
            remember(request)
        except OSError as err:
            self._say(f"not run: cannot remember that you trust {request.source.name}: {err}")
            return
        function, args = self._job
        self.start(function, *args, hooks=self._hooks)


def load_model_info(spec: str, weights: str | None) -> tuple[LoadedModel, ModelInfo]:
    """Load (or reuse, see ``models.cache``) a model and describe its classes and layers."""
    from napari_gradcam.core.explain.model_layers import candidate_layouts
    from napari_gradcam.models.cache import cached_model

    loaded = cached_model(spec, weights)
    layouts = candidate_layouts(loaded).items()
    layers = tuple((f"{name} ({layout.label()})", name) for name, layout in layouts)
    heads = _attention_heads(loaded.module)
    classes = tuple(loaded.card.classes)
    output, text = loaded.card.output, loaded.text is not None
    return loaded, ModelInfo(spec, weights, classes, layers, heads, output, text)


def _attention_heads(module: Module) -> int | None:
    """Heads of the last readable attention module, or ``None`` (none, or unreadable)."""
    from napari_gradcam.core.explain.hooks import attention_modules

    try:
        found = attention_modules(module)
    except ValueError:
        return None
    return int(getattr(found[-1][1], "num_heads", 0)) or None


def load_model_step(
    spec: str, weights: str | None, total: int
) -> Generator[Progress | ModelReady, None, LoadedModel]:
    """Load a job's model: the first step of a job, with its :class:`ModelReady` event.

    Raises what ``cached_model`` raises (see :data:`USER_ERRORS`).
    """
    yield Progress(0, total, f"loading model {spec!r}")
    loaded, info = load_model_info(spec, weights)
    yield ModelReady(info)
    yield Progress(1, total, "model loaded")
    return loaded
