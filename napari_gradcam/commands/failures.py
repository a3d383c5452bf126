"""How a batch command reports an input that failed and goes on with the others.

An expected failure (a bad or too large input, a file that cannot be written) is one line of
advice; running out of memory (``MemoryError`` or torch's out-of-memory error) says what to
try instead; anything else is a bug: its traceback goes to the per-user error log, which the
line names. The batch goes on, and ends with the list of what failed and exit status 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

from napari_gradcam.user_state import unexpected_error_message


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says that memory (host or accelerator) ran out."""
    if isinstance(error, MemoryError):
        return True
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    # torch.OutOfMemoryError since torch 2.5; the same class as torch.cuda's before
    out_of_memory = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(error, out_of_memory)


def failure_message(error: Exception, context: str, memory_advice: str) -> str:
    """The one line that tells the user why ``context`` failed and what to do.

    Parameters
    ----------
    context : str
        What was being done, e.g. ``"explaining scan.png"`` (for the error log).
    memory_advice : str
        What to try when memory ran out.
    """
    if is_out_of_memory(error):
        detail = str(error).strip()
        said = f" ({detail})" if detail else ""
        return f"out of memory{said}; {memory_advice}"
    if isinstance(error, (ValueError, OSError)):
        return str(error)
    return unexpected_error_message(error, context)


class BatchFailures:
    """The inputs of a batch that failed, each reported once as it fails and all at the end.

    Parameters
    ----------
    kind : str
        What the inputs are ("images", "slides").
    memory_advice : str
        What to try when memory runs out.
    """

    def __init__(self, kind: str, memory_advice: str) -> None:
        self.kind = kind
        self.memory_advice = memory_advice
        self.failed: list[Path] = []

    def add(self, item: Path, error: Exception) -> None:
        """Report on stderr that ``item`` failed with ``error``, and remember it."""
        message = failure_message(error, f"processing {item}", self.memory_advice)
        print(f"{item}: {message}", file=sys.stderr)
        self.failed.append(item)

    def exit_status(self, total: int) -> int:
        """Print the failed inputs (if any) and return the exit status: 0, or 1 if any failed."""
        if not self.failed:
            return 0
        names = ", ".join(str(item) for item in self.failed)
        print(f"{len(self.failed)} of {total} {self.kind} failed: {names}", file=sys.stderr)
        return 1
