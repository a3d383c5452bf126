"""Files that declare far more pixels than they hold: a few hundred KB that claim gigapixels.

Every tile but the first is empty (no bytes: readers fill it with zeros), so the file stays
small however large its declared shape is.
"""

from __future__ import annotations

import itertools
import zlib
from pathlib import Path

import numpy as np
import tifffile


def write_declared_tiff(path: Path, side: int, tile: int = 256) -> Path:
    """Write an RGB tiled TIFF that declares ``side`` x ``side`` pixels; return ``path``."""
    count = (-(-side // tile)) ** 2
    pattern = (np.indices((tile, tile, 3)).sum(0) % 251).astype(np.uint8)
    tiles = itertools.chain([zlib.compress(pattern.tobytes())], itertools.repeat(b"", count - 1))
    tifffile.imwrite(
        path,
        data=tiles,
        shape=(side, side, 3),
        dtype="uint8",
        tile=(tile, tile),
        photometric="rgb",
        compression="zlib",
        bigtiff=side > 40_000,
    )
    return path


def write_declared_pyramid(path: Path, side: int, coarse_side: int, tile: int = 4096) -> Path:
    """Write an OME-TIFF pyramid: a declared ``side``² level 0 and a real ``coarse_side``² one."""
    count = (-(-side // tile)) ** 2
    coarse = np.zeros((coarse_side, coarse_side, 3), np.uint8)
    coarse[: coarse_side // 2] = (200, 80, 160)  # stained tissue on the top half
    with tifffile.TiffWriter(path, bigtiff=True, ome=True) as tiff:
        tiff.write(
            data=itertools.repeat(b"", count),
            shape=(side, side, 3),
            dtype="uint8",
            tile=(tile, tile),
            photometric="rgb",
            compression="zlib",
            subifds=1,
            metadata={"axes": "YXS"},
        )
        tiff.write(coarse, tile=(256, 256), photometric="rgb", compression="zlib", subfiletype=1)
    return path


def write_declared_png(path: Path, height: int, width: int) -> Path:
    """Write a PNG whose header declares ``height`` x ``width`` RGB pixels and holds almost none."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = height.to_bytes(4, "big").join([width.to_bytes(4, "big"), bytes([8, 2, 0, 0, 0])])
    pixels = zlib.compress(b"\x00" * (1 + 3 * width))  # one row; the rest is missing
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )
    return path
