import numpy as np
import pytest
import torch
from torch import nn

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.explain.explanation import normalize_cam
from napari_gradcam.core.explain.pipeline import explain
from napari_gradcam.core.loaded_model import LoadedModel
from napari_gradcam.core.regions.placement import heatmap_transform
from napari_gradcam.core.settings import ExplainSettings
from napari_gradcam.core.tiling.grid import (
    LevelView,
    Stitcher,
    axis_origins,
    grid_step,
    tile_grid,
    tile_window,
)
from napari_gradcam.core.tiling.sampling import choose_sampling, sampling_for
from napari_gradcam.core.tiling.tiled import (
    explain_tile_batch,
    plan_tiles,
    preprocess_tiles,
    read_tiles,
)

CELL = 4
TILE = 16


def cellwise_model() -> nn.Module:
    """Every map cell sees only its own 4 x 4 pixels: tile maps are crops of the whole map."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 1),
        nn.ReLU(),
        nn.AvgPool2d(CELL),
        nn.Conv2d(6, 5, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(5, 2),
    )


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    card = ModelCard(name="cellwise", classes=("a", "b"), input_size=(TILE, TILE), mpp=0.5)
    return LoadedModel(cellwise_model().eval(), card, "cellwise", "factory")


@pytest.fixture
def two_halves() -> np.ndarray:
    """Texture with a strong left half and a faint right half (seams would show between)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 96, 3)).astype(np.float32)
    image[:, 48:] = 128 + (image[:, 48:] - 128) * 0.2
    return image.astype(np.uint8)


def stitched(loaded, image, window="hann", overlap=0.5, batch=7, target=1) -> tuple:
    view = LevelView(image)
    settings = ExplainSettings(layer="4", target=target)
    plan = plan_tiles(loaded, view, 0, (0, 0, *image.shape[:2]), overlap=overlap, settings=settings)
    stitcher = Stitcher(plan.grid, window)
    for indices in plan.batches(batch):
        tiles = read_tiles(view, plan.grid.origins[indices], plan.grid.tile)
        results = explain_tile_batch(loaded, tiles, indices, plan.settings, (0, 255))
        stitcher.add(results.indices, results.cams)
    return stitcher.finish(), plan


@pytest.mark.parametrize("window", ["hann", "mean"])
@pytest.mark.parametrize("overlap", [0.0, 0.5, 0.75])
def test_stitching_equals_the_whole_image_map(loaded, two_halves, window, overlap):
    cam, plan = stitched(loaded, two_halves, window, overlap)
    direct = explain(loaded, two_halves, layer="4", target=1).cam
    height, width = direct.shape
    # Grad-CAM of a GAP head scales each map by 1 / (map cells): one constant for all tiles.
    scale = (height * width) / np.prod(plan.grid.tile_cells)
    np.testing.assert_allclose(cam, direct * scale, rtol=1e-4, atol=1e-6)


def test_one_normalisation_keeps_the_faint_half_faint(loaded, two_halves):
    cam, _ = stitched(loaded, two_halves)
    direct = explain(loaded, two_halves, layer="4", target=1).cam
    shown = normalize_cam(cam)
    np.testing.assert_allclose(shown, normalize_cam(direct), atol=1e-5)
    # per-tile normalisation would stretch every faint tile to 1
    assert shown[:, :12].max() == 1.0 and shown[:, 12:].max() < 0.6
    assert shown[:, 12:].std() < 0.5 * shown[:, :12].std()


def test_grid_steps_on_cells_and_ends_flush():
    grid = tile_grid((3, 5, 70, 61), (16, 16), CELL, (4, 4), overlap=0.5)
    rows, cols = np.unique(grid.origins[:, 0]), np.unique(grid.origins[:, 1])
    assert grid.step == (8, 8)
    assert np.all((rows - 3) % CELL == 0) and np.all((cols - 5) % CELL == 0)
    assert 70 - (rows[-1] + 16) < CELL and 61 - (cols[-1] + 16) < CELL
    assert grid.map_shape == ((rows[-1] - 3) // CELL + 4, (cols[-1] - 5) // CELL + 4)
    assert np.array_equal(grid.origins, np.array(sorted(map(tuple, grid.origins))))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: axis_origins(0, 10, 16, 8, 4), "a tile needs 16"),
        (lambda: tile_grid((0, 0, 64, 64), (18, 16), 4, (5, 4)), "multiple of the layer's stride"),
        (lambda: grid_step(16, 4, 1.0), "overlap must be in"),
        (lambda: tile_window((4, 4), "gauss"), "unknown window"),
    ],
)
def test_bad_grids_say_what_to_do(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_hann_windows_cross_fade_to_one_at_half_overlap():
    window = np.sqrt(np.diag(tile_window((8, 8))))
    np.testing.assert_allclose(window[:4] + window[4:], 1.0, atol=1e-6)
    assert window.min() > 0


def test_stitcher_holds_one_band_and_writes_finished_rows(loaded):
    grid = tile_grid((0, 0, 64, 64), (16, 16), CELL, (4, 4), overlap=0.5)
    rows_written = []

    class Recorder(np.ndarray):
        def __setitem__(self, key, value):
            rows_written.append((key.start, key.stop))
            super().__setitem__(key, value)

    out = np.zeros(grid.map_shape, np.float32).view(Recorder)
    stitcher = Stitcher(grid, out=out)
    assert stitcher._sum.shape == (4, grid.map_shape[1])
    ones = np.ones((grid.n_tiles, 4, 4), np.float32)
    stitcher.add(np.arange(grid.n_tiles), ones)
    stitcher.finish()
    assert rows_written[0] == (0, 2) and rows_written[-1][1] == grid.map_shape[0]
    np.testing.assert_allclose(out, 1.0)
    assert stitcher.maximum == 1.0


def test_stitcher_rows_show_the_band_while_running():
    grid = tile_grid((0, 0, 32, 32), (16, 16), CELL, (4, 4), overlap=0.5)
    stitcher = Stitcher(grid, "mean")
    start, stop = stitcher.add(np.array([0]), np.full((1, 4, 4), 2.0, np.float32))
    rows = stitcher.rows(start, stop)
    assert (start, stop) == (0, 4) and rows.shape == (4, 8)
    assert np.all(rows[:, :4] == 2.0) and np.all(rows[:, 4:] == 0.0)


def test_skipped_tiles_leave_zeros(loaded, two_halves):
    grid = tile_grid((0, 0, 64, 96), (16, 16), CELL, (4, 4))
    stitcher = Stitcher(grid)
    keep = np.flatnonzero(grid.origins[:, 1] < 32)
    stitcher.add(keep, np.ones((len(keep), 4, 4), np.float32))
    cam = stitcher.finish()
    assert np.all(cam[:, :10] == 1.0) and np.all(cam[:, 10:] == 0.0)


def test_placement_on_a_pyramid_level_covers_the_same_world(loaded):
    rng = np.random.default_rng(1)
    level1 = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    view = LevelView(level1, downsample=(2.0, 2.0))
    plan = plan_tiles(loaded, view, 1, (0, 0, 80, 112), settings=ExplainSettings(layer="4"))
    assert plan.stride == (8.0, 8.0) and plan.origin == (0.0, 0.0)
    scale, translate = heatmap_transform(plan.stride, plan.origin, (0.25, 0.5), (10.0, -3.0))
    rows, cols = plan.grid.map_shape
    world = (
        np.array(translate) - np.array(scale) / 2,
        np.array(translate) + np.array(scale) * (np.array([rows, cols]) - 0.5),
    )
    covered = np.array([8 * rows, 8 * cols])  # level-0 pixels under the map
    image_edges = np.array([10.0, -3.0]) - np.array([0.25, 0.5]) / 2
    np.testing.assert_allclose(world[0], image_edges)
    np.testing.assert_allclose(world[1], image_edges + np.array([0.25, 0.5]) * covered)
    assert tuple(covered) == (80, 112)


def test_a_box_is_planned_on_sampled_pixels_with_its_origin(loaded):
    image = np.random.default_rng(2).integers(0, 256, (90, 90, 3), dtype=np.uint8)
    view = LevelView(image, resample=2.0)
    plan = plan_tiles(loaded, view, 0, (10, 20, 90, 90), settings=ExplainSettings(layer="4"))
    assert plan.grid.region == (5, 10, 45, 45)
    assert plan.origin == (10.0, 20.0) and plan.stride == (8.0, 8.0)
    tile = view.read(5, 10, 21, 26)
    assert tile.shape == (16, 16, 3) and tile.dtype == np.uint8


@pytest.mark.parametrize(
    ("method", "cell"), [("gradcam", CELL), ("scorecam", CELL), ("occlusion", 1)]
)
def test_planning_probes_the_geometry_without_explaining_a_tile(loaded, monkeypatch, method, cell):
    from napari_gradcam.core.tiling import tiled

    def refuse(*_args, **_kwargs):
        raise AssertionError("planning explained a tile")

    monkeypatch.setattr(tiled, "explain", refuse)
    view = LevelView(np.zeros((64, 64, 3), np.uint8), resample=2.0)
    plan = plan_tiles(loaded, view, 0, (0, 0, 64, 64), settings=ExplainSettings(method, layer="4"))
    assert plan.stride == (cell * 2.0, cell * 2.0)
    layer = "input" if method == "occlusion" else "4"
    assert plan.settings.layer == layer and plan.grid.tile_cells == (TILE // cell,) * 2


def test_a_region_outside_the_image_says_so(loaded):
    view = LevelView(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="lies outside the image"):
        plan_tiles(loaded, view, 0, (100, 100, 200, 200), settings=ExplainSettings(layer="4"))


def test_read_tiles_matches_slicing_with_gaps_and_rows():
    image = np.arange(40 * 60 * 3, dtype=np.uint16).reshape(40, 60, 3)
    origins = np.array([[0, 0], [0, 8], [0, 40], [8, 4]])
    tiles = read_tiles(LevelView(image), origins, (16, 16))
    expected = [image[y : y + 16, x : x + 16] for y, x in origins]
    np.testing.assert_array_equal(tiles, np.stack(expected))


class _CountedReads:
    """An image that counts how many reads, and how many pixels, are made of it."""

    def __init__(self, image: np.ndarray) -> None:
        self.image, self.shape, self.dtype = image, image.shape, image.dtype
        self.reads = self.pixels = 0

    def __getitem__(self, key: tuple) -> np.ndarray:
        out = self.image[key]
        self.reads += 1
        self.pixels += out.shape[0] * out.shape[1]
        return out


def test_half_overlapping_rows_are_read_as_one_band_and_far_rows_apart():
    image = np.arange(64 * 96 * 3, dtype=np.uint16).reshape(64, 96, 3)
    rows = np.array([[y, x] for y in (0, 8, 16) for x in (0, 8, 16, 24)])  # overlapping rows
    apart = np.array([[0, 0], [0, 8], [40, 72], [40, 80]])  # a band would read mostly glass
    for origins, reads, pixels in ((rows, 1, 32 * 40), (apart, 2, 2 * 16 * 24)):
        counted = _CountedReads(image)
        tiles = read_tiles(LevelView(counted), origins, (16, 16))
        expected = [image[y : y + 16, x : x + 16] for y, x in origins]
        np.testing.assert_array_equal(tiles, np.stack(expected))
        assert (counted.reads, counted.pixels) == (reads, pixels)


def test_resampled_views_read_row_by_row():
    counted = _CountedReads(np.zeros((64, 96, 3), np.uint8))
    rows = np.array([[y, x] for y in (0, 4) for x in (0, 4)])
    read_tiles(LevelView(counted, resample=1.5), rows, (8, 8))
    assert counted.reads == 2


def test_sampling_prefers_a_level_and_resamples_when_needed():
    assert choose_sampling([0.25, 1.0, 4.0], 0.5) == (0, 2.0)
    assert choose_sampling([0.25, 0.5, 1.0], 0.52) == (1, 1.0)
    assert sampling_for([(1, 1), (4, 4)], 0.25, 1.0) == (1, 1.0)
    assert sampling_for([(1, 1), (4, 4)], None, 1.0) == (0, 1.0)
    assert sampling_for([(1, 1), (4, 4)], 0.25, 1.0, level=0) == (0, 1.0)
    with pytest.raises(ValueError, match="would need upsampling"):
        choose_sampling([0.5, 2.0], 0.2)
    with pytest.raises(ValueError, match="no level 3"):
        sampling_for([(1, 1)], 0.5, 0.5, level=3)
    with pytest.raises(ValueError, match="--slide-mpp"):
        sampling_for([(1, 1)], None, 0.5, mpp=1.0)


def test_tta_tiles_equal_tta_explanations_and_keep_the_plain_predictions(two_halves):
    torch.manual_seed(1)
    model = cellwise_model()
    model[0] = nn.Conv2d(3, 6, 3, padding=1)  # 3 x 3 kernels: flips change the map
    loaded = LoadedModel(model.eval(), ModelCard(input_size=(TILE, TILE)), "3x3", "factory")
    view = LevelView(two_halves)
    settings = ExplainSettings(layer="4", target=1, tta=True)
    plan = plan_tiles(loaded, view, 0, (0, 0, 32, 48), overlap=0.0, settings=settings)
    indices = plan.batches(8)[0]
    tiles = read_tiles(view, plan.grid.origins[indices], plan.grid.tile)
    results = explain_tile_batch(loaded, tiles, indices, plan.settings, (0, 255))
    first = preprocess_tiles(tiles[:1], loaded.card, (0, 255), torch.device("cpu"))
    with_tta = explain(loaded, first, layer="4", target=1, tta=True)
    plain = explain(loaded, first, layer="4", target=1)
    assert not np.allclose(with_tta.cam, plain.cam, rtol=0.01)
    np.testing.assert_allclose(results.cams[:1], with_tta.cam, rtol=1e-5, atol=1e-7)
    assert len(results.facts["probability"]) == len(indices)
    probabilities = torch.softmax(torch.from_numpy(plain.logits), dim=1)
    assert results.facts["class_index"][0] == int(probabilities.argmax())
    np.testing.assert_allclose(results.facts["probability"][0], probabilities.max(), rtol=1e-5)
