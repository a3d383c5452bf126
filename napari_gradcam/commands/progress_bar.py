"""Drive a pipeline's generator to its result under a tqdm progress bar (the CLI's face)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeVar

from napari_gradcam.core.progress import Progress, run_to_end

Result = TypeVar("Result")


def run_with_bar(run: Generator[Any, None, Result], name: str, unit: str) -> Result:
    """Run ``run`` to its end, showing its :class:`Progress` steps as a bar named ``name``."""
    from tqdm import tqdm

    with tqdm(desc=name, unit=unit, dynamic_ncols=True) as bar:

        def show(event: Any) -> None:
            if isinstance(event, Progress):
                bar.total = event.total
                bar.update(event.step - bar.n)

        return run_to_end(run, show)
