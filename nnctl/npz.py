"""The bytes of an ``.npz`` file, written directly: a zip archive (stored, not compressed) of ``.npy`` arrays.

``np.savez`` goes through ``zipfile`` and ``np.lib.format`` one array at a time, about 0.3 ms for a small
network's checkpoint; a population writes thousands of them, so nnctl lays the bytes out itself (about 0.05 ms).
``np.load`` and nnctl's own reader (``data.files.read_npz_arrays``) read the result as they read ``np.savez``'s.
The file is the same for the same arrays (no time stamps); object arrays (pickles) are refused.  What plain zip
records and an .npy 1.0 header cannot describe (past 2 GiB, 65 535 members, headers past 64 KiB, field names
beyond Latin-1) is written as ``np.savez`` writes it.
"""

from __future__ import annotations

import io
import struct
import warnings
import zipfile
import zlib

import numpy as np

#: a zip member's DOS date and time: 1980-01-01 00:00, so that equal arrays give equal files
_DOS_DATE, _DOS_TIME = (0 << 9) | (1 << 5) | 1, 0
_LOCAL = struct.Struct("<IHHHHHIIIHH")  # local file header (30 bytes), then the name
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")  # central directory entry (46 bytes), then the name
_END = struct.Struct("<IHHHHIIH")  # end of the central directory (22 bytes)
_ZIP_LIMIT = 2**31  # beyond this, offsets need zip64
_MADE_BY = (3 << 8) | 20  # "version made by": Unix (so that unzip trusts the mode bits and UTF-8 names), zip 2.0
_MAX_MEMBERS = 0xFFFF  # the end record counts members in 16 bits


class _PlainZipTooSmall(Exception):
    """An archive that plain zip records or an .npy 1.0 header cannot describe: ``np.savez``'s form then."""


def npy_parts(array: np.ndarray) -> tuple[bytes, np.ndarray]:
    """The ``.npy`` format 1.0 header of ``array`` (padded so that the data starts at a multiple of 64 bytes,
    as numpy writes it), and its data in C order."""
    if array.dtype.hasobject:
        raise ValueError("object arrays are not written (they would be pickles)")
    if not array.flags.c_contiguous:
        array = array.copy(order="C")
    descr = np.lib.format.dtype_to_descr(array.dtype)
    header = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (descr, array.shape)
    header += " " * (-(len(header) + 11) % 64) + "\n"  # 10 bytes of magic, version and length before it
    try:
        encoded = header.encode("latin1")
    except UnicodeEncodeError:  # field names beyond Latin-1 need format 3.0
        raise _PlainZipTooSmall from None
    if len(encoded) > 0xFFFF:  # a header longer than 1.0's 16-bit length (thousands of fields) needs 2.0
        raise _PlainZipTooSmall
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(encoded)) + encoded, array.reshape(-1).view(np.uint8)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` holding ``arrays`` under their names, in their order."""
    arrays = {name: np.asarray(array) for name, array in arrays.items()}
    if sum(array.nbytes for array in arrays.values()) > _ZIP_LIMIT - 2**20 or len(arrays) >= _MAX_MEMBERS:
        return _zip64_npz_bytes(arrays)
    try:
        return _plain_npz_bytes(arrays)
    except _PlainZipTooSmall:
        return _zip64_npz_bytes(arrays)


def _plain_npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    parts: list = []
    central: list[bytes] = []
    offset = 0
    for name, array in arrays.items():
        header, data = npy_parts(array)
        filename = f"{name}.npy".encode("utf-8")
        crc = zlib.crc32(data, zlib.crc32(header))
        size = len(header) + data.nbytes
        flags = 0x800 if not filename.isascii() else 0  # the name is UTF-8
        local = _LOCAL.pack(0x04034B50, 20, flags, 0, _DOS_TIME, _DOS_DATE, crc, size, size, len(filename), 0)
        central.append(
            _CENTRAL.pack(0x02014B50, _MADE_BY, 20, flags, 0, _DOS_TIME, _DOS_DATE, crc, size, size, len(filename), 0, 0, 0, 0, 0o644 << 16, offset)
            + filename
        )
        parts += [local, filename, header, data]
        offset += len(local) + len(filename) + size
    directory = b"".join(central)
    parts += [directory, _END.pack(0x06054B50, 0, 0, len(central), len(central), len(directory), offset, 0)]
    return b"".join(parts)


def _zip64_npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """What ``np.savez`` writes (zipfile with zip64 records), for archives too large for plain zip offsets."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            if array.dtype.hasobject:
                raise ValueError("object arrays are not written (they would be pickles)")
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member, warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "stored in format 2.0": the point of this path
                np.lib.format.write_array(member, array, allow_pickle=False)
    return buffer.getvalue()
