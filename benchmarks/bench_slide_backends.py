"""Reading speed of the slide backends on the same slides: why tifffile is the TIFF default.

Each backend reads level 0 three ways: the same random 224 x 224 px boxes (random access,
like panning), every 224 px tile of a grid with 50 % overlap in row runs as the slide runner
reads them, and the whole level through its dask array (as napari and the tissue finder do).
Rounds are interleaved; medians are printed with each backend's time over the default's.

* the CC0 Aperio slide (JPEG tiles): tifffile against OpenSlide;
* a 4096 x 4096 JPEG tiled TIFF pyramid written here: tifffile against OpenSlide;
* the same pixels as a DICOM WSI (native RGB) written here: wsidicom against OpenSlide.

    python benchmarks/bench_slide_backends.py [--rounds 5] [--boxes 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
BOX = 224


def tiled_tiff(path: Path, side: int = 4096) -> np.ndarray:
    """A JPEG tiled TIFF pyramid of the CC0 texture, mirrored to ``side`` px; return level 0."""
    import tifffile

    from napari_gradcam.data import read_he_region

    region = read_he_region()
    reps = -(-side // min(region.shape[:2])) + 1
    pixels = np.tile(region, (reps, reps, 1))[:side, :side].copy()
    options = {"tile": (256, 256), "photometric": "rgb", "compression": "jpeg"}
    with tifffile.TiffWriter(path) as tiff:
        for index, factor in enumerate((1, 2, 4)):
            extra = {"subfiletype": 1} if index else {}
            tiff.write(pixels[::factor, ::factor], **options, **extra)
    return pixels


def boxes(shape: tuple[int, ...], count: int, seed: int = 0) -> np.ndarray:
    """``count`` random (top, left, bottom, right) boxes inside ``shape``."""
    rng = np.random.default_rng(seed)
    tops = rng.integers(0, shape[0] - BOX, count)
    lefts = rng.integers(0, shape[1] - BOX, count)
    return np.stack([tops, lefts, tops + BOX, lefts + BOX], axis=1)


def read_boxes(slide, chosen: np.ndarray) -> float:
    start = time.perf_counter()
    for box in chosen:
        slide.read_region(0, tuple(box))
    return time.perf_counter() - start


def read_grid(slide) -> float:
    """Every tile of a 224 px grid at 112 px steps, read in row runs like the slide runner."""
    import napari_gradcam as ng

    height, width = slide.shape
    rows, columns = np.meshgrid(
        np.arange(0, height - BOX, BOX // 2), np.arange(0, width - BOX, BOX // 2), indexing="ij"
    )
    origins = np.stack([rows.ravel(), columns.ravel()], axis=1)
    _, view = ng.level_view(slide, None, level=0)
    start = time.perf_counter()
    for batch in np.array_split(origins, max(1, len(origins) // 64)):
        ng.read_tiles(view, batch, (BOX, BOX))
    return time.perf_counter() - start


def read_level(slide) -> float:
    start = time.perf_counter()
    slide.dask_levels()[0].compute(scheduler="threads", num_workers=2)
    return time.perf_counter() - start


def compare(title: str, path: Path, backends: list[str], rounds: int, count: int) -> None:
    import napari_gradcam as ng

    slides = {name: ng.open_slide(path, backend=name) for name in backends}
    chosen = boxes(slides[backends[0]].shape, count)
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for name, slide in slides.items():
            times.setdefault((name, "boxes"), []).append(read_boxes(slide, chosen))
            times.setdefault((name, "runner"), []).append(read_grid(slide))
            times.setdefault((name, "level 0"), []).append(read_level(slide))
    print(f"\n{title} ({path.name}, level 0 {slides[backends[0]].shape})")
    kinds = ("boxes", "runner", "level 0")
    print(f"{'backend':<10}" + "".join(f" {kind + ' s':>10} {'ratio':>6}" for kind in kinds))
    base = {kind: statistics.median(times[(backends[0], kind)]) for kind in kinds}
    for name in backends:
        medians = [statistics.median(times[(name, kind)]) for kind in kinds]
        cells = [f" {m:>10.3f} {m / base[k]:>6.2f}" for m, k in zip(medians, kinds, strict=True)]
        print(f"{name:<10}" + "".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--boxes", type=int, default=200)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parents[1]))
    from napari_gradcam.data import HE_SLIDE_PATH
    from tests.slides.slide_files import _dicom_level

    print(
        f"{args.boxes} random {BOX} px boxes, the runner's tiles, level 0; medians of {args.rounds}"
    )
    compare("CC0 Aperio slide", HE_SLIDE_PATH, ["tifffile", "openslide"], args.rounds, args.boxes)
    with tempfile.TemporaryDirectory() as folder:
        tiff = Path(folder) / "pyramid.tif"
        pixels = tiled_tiff(tiff)
        compare("JPEG tiled TIFF", tiff, ["tifffile", "openslide"], args.rounds, args.boxes)
        dicom = Path(folder) / "dicom"
        dicom.mkdir()
        dataset = _dicom_level(pixels, 256, 0.0005, 0, _series())
        dataset.save_as(dicom / "level0.dcm", enforce_file_format=True)
        compare("DICOM WSI", dicom, ["wsidicom", "openslide"], args.rounds, args.boxes)


def _series() -> dict:
    from pydicom.uid import generate_uid

    return {
        "StudyInstanceUID": generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "FrameOfReferenceUID": generate_uid(),
        "ContainerIdentifier": "bench",
        "PatientID": "synthetic",
        "StudyID": "1",
        "SeriesNumber": 1,
        "Modality": "SM",
        "ImagedVolumeHeight": 4096 * 0.0005,
        "ImagedVolumeWidth": 4096 * 0.0005,
    }


if __name__ == "__main__":
    main()
