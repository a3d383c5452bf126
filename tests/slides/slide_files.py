"""Small slides written here, one per format family, with known pixels and microns per pixel.

Every writer returns the pixels of each level it wrote (finest first), so a test can compare
what a backend reads with the truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

MPP = 0.5
SHAPE = (600, 800)
FACTORS = (1, 2, 4)


def truth(shape: tuple[int, int] = SHAPE, seed: int = 0) -> list[np.ndarray]:
    """Random RGB level 0 and its 2x and 4x subsamples (what each writer stores)."""
    data = np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)
    return [np.ascontiguousarray(data[::f, ::f]) for f in FACTORS]


def _resolution(mpp: float) -> dict:
    return {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}


def write_svs(path: Path, mpp: float = MPP) -> list[np.ndarray]:
    """An Aperio-like SVS: tiled levels, a stripped thumbnail second, ``MPP`` in the text."""
    levels = truth()
    height, width = levels[0].shape[:2]
    head = f"Aperio Image Library v12.0.0 \r\n{width}x{height} [0,0 {width}x{height}] (128x128)"
    tail = f"|AppMag = 20|MPP = {mpp}"
    options = {"photometric": "rgb", "compression": "zlib", "metadata": None}
    with tifffile.TiffWriter(path) as tiff:
        tiff.write(levels[0], tile=(128, 128), description=head + tail, **options)
        thumbnail = levels[0][::8, ::8]
        tiff.write(thumbnail, description=f"{head} -> {width // 8}x{height // 8}{tail}", **options)
        for level in levels[1:]:
            text = f"{head} -> {level.shape[1]}x{level.shape[0]}{tail}"
            tiff.write(level, tile=(128, 128), description=text, **options)
    return levels


def write_ome_tiff(path: Path, mpp: float = MPP, tags: bool = True) -> list[np.ndarray]:
    """An OME-TIFF pyramid: reduced levels in SubIFDs, ``PhysicalSizeX`` in the OME-XML.

    With ``tags``, the TIFF resolution tags say the same (as Bio-Formats writes them; OpenSlide
    reads only those).
    """
    levels = truth()
    metadata = {"axes": "YXS", "PhysicalSizeX": mpp, "PhysicalSizeY": mpp}
    resolution = _resolution(mpp) if tags else {}
    with tifffile.TiffWriter(path, ome=True) as tiff:
        tiff.write(
            levels[0],
            tile=(128, 128),
            subifds=len(levels) - 1,
            photometric="rgb",
            metadata={**metadata, "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"},
            **resolution,
        )
        for level in levels[1:]:
            tiff.write(level, tile=(128, 128), photometric="rgb", subfiletype=1)
    return levels


def write_tiled_tiff(path: Path, mpp: float = MPP) -> list[np.ndarray]:
    """A generic tiled TIFF: one page per level, resolution tags in pixels per centimetre."""
    levels = truth()
    with tifffile.TiffWriter(path) as tiff:
        for index, level in enumerate(levels):
            kind = {"subfiletype": 1} if index else {}
            tiff.write(level, tile=(128, 128), photometric="rgb", **kind, **_resolution(mpp))
    return levels


def write_dicom(folder: Path, mpp: float = MPP, tile: int = 128) -> list[np.ndarray]:
    """A DICOM WSI: one VL Whole Slide Microscopy instance per level, TILED_FULL, native RGB."""
    from pydicom.uid import generate_uid

    levels = truth()
    folder.mkdir(parents=True, exist_ok=True)
    series = {
        "StudyInstanceUID": generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "FrameOfReferenceUID": generate_uid(),
        "ContainerIdentifier": "slide-1",
        "PatientID": "synthetic",
        "StudyID": "1",
        "SeriesNumber": 1,
        "Modality": "SM",
        "ImagedVolumeHeight": SHAPE[0] * mpp / 1000,
        "ImagedVolumeWidth": SHAPE[1] * mpp / 1000,
    }
    for index, level in enumerate(levels):
        spacing = mpp * FACTORS[index] / 1000
        dataset = _dicom_level(level, tile, spacing, index, series)
        dataset.save_as(folder / f"level{index}.dcm", enforce_file_format=True)
    return levels


WSI_STORAGE = "1.2.840.10008.5.1.4.1.1.77.1.6"


def _dicom_level(pixels: np.ndarray, tile: int, spacing_mm: float, index: int, series: dict):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    rows, columns = pixels.shape[:2]
    down, across = -(-rows // tile), -(-columns // tile)
    padded = np.zeros((down * tile, across * tile, 3), np.uint8)
    padded[:rows, :columns] = pixels
    frames = padded.reshape(down, tile, across, tile, 3).transpose(0, 2, 1, 3, 4)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = WSI_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.update(series)
    dataset.SOPClassUID = WSI_STORAGE
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.ImageType = ["DERIVED" if index else "ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    dataset.InstanceNumber = index + 1
    dataset.DimensionOrganizationType = "TILED_FULL"
    dataset.TotalPixelMatrixRows, dataset.TotalPixelMatrixColumns = rows, columns
    dataset.TotalPixelMatrixFocalPlanes = dataset.NumberOfOpticalPaths = 1
    dataset.Rows = dataset.Columns = tile
    dataset.NumberOfFrames = down * across
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 3, "RGB"
    dataset.PlanarConfiguration = dataset.PixelRepresentation = 0
    dataset.BitsAllocated = dataset.BitsStored = 8
    dataset.HighBit = 7
    measures = Dataset()
    measures.PixelSpacing = [spacing_mm, spacing_mm]
    measures.SliceThickness = 0.001
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    dataset.SharedFunctionalGroupsSequence = Sequence([shared])
    path = Dataset()
    path.OpticalPathIdentifier = "0"
    dataset.OpticalPathSequence = Sequence([path])
    dataset.PixelData = frames.tobytes()
    return dataset


WRITERS = {
    "svs": ("slide.svs", write_svs),
    "ome-tiff": ("slide.ome.tif", write_ome_tiff),
    "tiled-tiff": ("slide.tif", write_tiled_tiff),
    "dicom": ("dicom-slide", write_dicom),
}
"""Kind -> (file or folder name, writer)."""


def write_slide(kind: str, folder: Path) -> tuple[Path, list[np.ndarray]]:
    """Write a slide of ``kind`` in ``folder``; return its path and its levels' pixels."""
    name, writer = WRITERS[kind]
    path = folder / name
    return path, writer(path)
