"""The per-user state folder, and the log file of unexpected errors kept in it.

The folder is ``$XDG_STATE_HOME`` (default ``~/.local/state``) ``/napari-gradcam``; on Windows
``%LOCALAPPDATA%/napari-gradcam``. ``$NAPARI_GRADCAM_STATE_DIR`` overrides it (tests use it).
What lives there: autosaves, the error log, and the list of code files the user chose to trust.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from datetime import datetime
from pathlib import Path

logger = logging.getLogger(__name__)

ERROR_LOG_NAME = "errors.log"
ERROR_LOG_MAX_BYTES = 4 * 2**20
"""Past this size the log is rotated once (``errors.log.1``), so it never grows without bound."""


def state_dir() -> Path:
    """Return the per-user state folder of napari-gradcam (not created here)."""
    explicit = os.environ.get("NAPARI_GRADCAM_STATE_DIR")
    if explicit:
        return Path(explicit)
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    else:
        base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "napari-gradcam"


def error_log_path() -> Path:
    """Return the file that :func:`log_unexpected_error` appends to."""
    return state_dir() / ERROR_LOG_NAME


def log_unexpected_error(error: BaseException, context: str) -> Path | None:
    """Append ``error``'s traceback to the error log and to the Python log.

    Parameters
    ----------
    error : BaseException
        The unexpected exception (a bug, not a bad input).
    context : str
        What was being done, e.g. ``"explain scan.png"``.

    Returns
    -------
    Path or None
        The log file to name in the message shown to the user; None when it cannot be written
        (the traceback then still reaches the Python log).
    """
    logger.error("unexpected error while %s", context, exc_info=error)
    text = "".join(traceback.format_exception(error))
    path = error_log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size > ERROR_LOG_MAX_BYTES:
            path.replace(path.with_name(ERROR_LOG_NAME + ".1"))
        with path.open("a", encoding="utf-8") as log:
            log.write(f"--- {datetime.now().isoformat(timespec='seconds')} {context}\n{text}\n")
    except OSError as err:
        logger.warning("cannot write the error log %s: %s", path, err)
        return None
    return path


def unexpected_error_message(error: BaseException, context: str) -> str:
    """Log ``error`` (see :func:`log_unexpected_error`) and return the sentence to show."""
    path = log_unexpected_error(error, context)
    where = f"the details are in {path}" if path else "the details are in the Python log"
    return (
        f"unexpected error while {context}: {type(error).__name__}: {error} "
        f"({where}; please report it with that file)"
    )
