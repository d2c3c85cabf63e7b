"""Reader for LeCun's IDX format (MNIST, Fashion-MNIST), plain or gzip-compressed.

Format (yann.lecun.com/exdb/mnist): a big-endian magic number 0x0000TTDD (TT = 0x08 for
uint8, DD = number of dimensions), DD big-endian uint32 sizes, then the uint8 payload.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from vitmae.data.checks import BadDataError

IMAGES_MAGIC = 2051  # 0x00000803: uint8, 3 dimensions (N, rows, cols)
LABELS_MAGIC = 2049  # 0x00000801: uint8, 1 dimension (N,)


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The uint8 array of IDX file `path` (.gz read directly); ValueError if malformed."""
    path = Path(path)
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            raw = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:  # a truncated or non-gzip .gz
        raise BadDataError(f"{path}: cannot decompress ({e}); truncated or corrupt") from e
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise BadDataError(f"{path}: expected an IDX header of {header} bytes, file has {len(raw)}")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise BadDataError(f"{path}: expected IDX magic number {magic}, found {found}")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if len(raw) - header != math.prod(dims):
        raise BadDataError(f"{path}: expected {math.prod(dims)} bytes of data for shape "
                           f"{tuple(dims)}, found {len(raw) - header}; the file is truncated "
                           f"or corrupt")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)
