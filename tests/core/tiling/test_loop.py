"""The tiled driver shared by the dock and the slide command: read-ahead, order, early stop."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_gradcam.core.progress import Progress, run_to_end
from napari_gradcam.core.settings import ExplainSettings
from napari_gradcam.core.tiling import loop
from napari_gradcam.core.tiling.grid import LevelView, tile_grid
from napari_gradcam.core.tiling.tiled import TilePlan, TileResults

TIMEOUT_S = 10.0


class RecordingView(LevelView):
    """A level whose reads are logged (the strip's top-left corner) and may be held."""

    def __init__(self, data: np.ndarray) -> None:
        super().__init__(data, (1.0, 1.0), 1.0)
        object.__setattr__(self, "log", [])
        object.__setattr__(self, "read_started", threading.Condition())

    def read(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        with self.read_started:
            self.log.append((y0, x0))
            self.read_started.notify_all()
        return super().read(y0, x0, y1, x1)


def small_plan() -> TilePlan:
    """A 4 x 4 grid of 8 px tiles without overlap over a 32 x 32 ramp: batches of 4 = rows."""
    data = np.arange(32 * 32, dtype=np.float32).reshape(32, 32)
    view = RecordingView(data)
    grid = tile_grid((0, 0, 32, 32), (8, 8), 4, (2, 2), overlap=0.0)
    explained = np.arange(grid.n_tiles)
    return TilePlan(view, 0, grid, np.ones(grid.n_tiles), explained, ExplainSettings())


def fake_explain(loaded, tiles, indices, settings, value_range) -> TileResults:
    """Each tile's 2 x 2 map is its mean pixel (checks the right pixels reached each tile)."""
    means = np.asarray(tiles, np.float32).mean(axis=(1, 2))
    return TileResults(np.asarray(indices), np.repeat(means, 4).reshape(-1, 2, 2))


def test_batches_come_back_in_order_with_the_pixels_of_their_tiles(monkeypatch):
    monkeypatch.setattr(loop, "explain_tile_batch", fake_explain)
    plan = small_plan()
    ahead = list(loop.explained_batches(None, plan, 4, (0.0, 1.0)))
    in_turn = list(loop.explained_batches(None, plan, 4, (0.0, 1.0), read_ahead=False))
    assert [r.indices.tolist() for r in ahead] == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9, 10, 11],
        [12, 13, 14, 15],
    ]
    for a, b in zip(ahead, in_turn, strict=True):
        np.testing.assert_array_equal(a.cams, b.cams)
    data = plan.view.data
    expected = [data[y : y + 8, x : x + 8].mean() for y, x in plan.grid.origins]
    np.testing.assert_allclose(np.concatenate([r.cams[:, 0, 0] for r in ahead]), expected)


@pytest.mark.parametrize("read_ahead", [True, False])
def test_the_next_batch_is_read_while_one_is_explained(monkeypatch, read_ahead):
    plan = small_plan()
    view = plan.view
    seen_ahead = []

    def waiting_explain(loaded, tiles, indices, settings, value_range):
        row = int(plan.grid.origins[indices[0]][0])
        ahead = read_ahead and row < 24  # the last row has no next row to read
        with view.read_started:  # wait for the read of the next row of tiles
            view.read_started.wait_for(
                lambda: any(y > row for y, _ in view.log), timeout=TIMEOUT_S if ahead else 0.2
            )
            seen_ahead.append(any(y > row for y, _ in view.log))
        return fake_explain(loaded, tiles, indices, settings, value_range)

    monkeypatch.setattr(loop, "explain_tile_batch", waiting_explain)
    results = list(loop.explained_batches(None, plan, 4, (0.0, 1.0), read_ahead=read_ahead))
    assert len(results) == 4
    assert seen_ahead == [read_ahead] * 3 + [False]  # nothing after the last batch


def test_stopping_early_reads_no_further_batch(monkeypatch):
    monkeypatch.setattr(loop, "explain_tile_batch", fake_explain)
    plan = small_plan()
    batches = loop.explained_batches(None, plan, 4, (0.0, 1.0))
    first = next(batches)
    batches.close()  # e.g. the dock's job was cancelled
    assert first.indices.tolist() == [0, 1, 2, 3]
    rows_read = {y for y, _ in plan.view.log}
    assert rows_read <= {0, 8}  # the first batch and at most the one read ahead


def test_the_tiled_run_yields_a_step_and_the_changed_rows_per_batch(monkeypatch):
    monkeypatch.setattr(loop, "explain_tile_batch", fake_explain)
    plan = small_plan()
    events = []
    run = loop.explain_tiled(None, plan, (0.0, 1.0), batch_size=4, watch_rows=True)
    stitched = run_to_end(run, events.append)
    steps = [e for e in events if isinstance(e, Progress)]
    batches = [e for e in events if isinstance(e, loop.TileBatch)]
    assert [(s.step, s.total) for s in steps] == [(4, 16), (8, 16), (12, 16), (16, 16)]
    assert steps[0].message.startswith("4/16 tiles explained") and "left" not in steps[-1].message
    assert [b.results.indices.tolist()[0] for b in batches] == [0, 4, 8, 12]
    data = plan.view.data
    means = np.array([[data[y : y + 8, x : x + 8].mean() for y, x in plan.grid.origins]])
    expected = np.repeat(np.repeat(means.reshape(4, 4), 2, axis=0), 2, axis=1)
    np.testing.assert_allclose(stitched.cam, expected)
    assert stitched.maximum == pytest.approx(expected.max())
    watched = np.concatenate([b.rows for b in batches if b.rows.size])
    np.testing.assert_allclose(watched, expected[: len(watched)])


def test_the_tiled_run_takes_batches_explained_elsewhere(monkeypatch):
    monkeypatch.setattr(loop, "explain_tile_batch", fake_explain)
    plan = small_plan()
    local = run_to_end(loop.explain_tiled(None, plan, (0.0, 1.0), batch_size=4))
    done = list(loop.explained_batches(None, plan, 4, (0.0, 1.0)))
    remote = run_to_end(loop.explain_tiled(None, plan, (0.0, 1.0), batch_size=4, batches=done))
    np.testing.assert_array_equal(local.cam, remote.cam)
