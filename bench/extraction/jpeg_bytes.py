"""Reading JPEG files as bytes for a GPU decoder, and the one header fact it needs.

nvjpeg (``torchvision.io.decode_jpeg(device="cuda")``) ignores EXIF orientation,
while the CPU path (:func:`bench.data.decode.open_rgb`) applies it. A JPEG whose
EXIF orientation is not "upright" is therefore decoded on the CPU instead, so
both paths see the same picture.
"""

from __future__ import annotations

import os
from pathlib import Path

JPEG_MAGIC = b"\xff\xd8\xff"
JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")
_EXIF = b"Exif\x00\x00"
_ORIENTATION_TAG = 0x0112


def read_file(path: Path | str) -> bytearray:
    """The whole file in a writable buffer (one allocation, no copy, four system calls)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        buf = bytearray(size)
        got = os.readv(fd, [buf]) if size else 0
        if got != size:  # the file changed size while being read
            del buf[got:]
        return buf
    finally:
        os.close(fd)


def is_gpu_decodable(buf: bytes | bytearray) -> bool:
    """A JPEG (by its magic bytes) that needs no EXIF rotation."""
    return buf[:3] == JPEG_MAGIC and exif_orientation(buf) == 1


def exif_orientation(buf: bytes | bytearray) -> int:
    """The EXIF orientation of JPEG bytes (1 = upright; also when absent or unreadable).

    Only the APPn segments right after the start-of-image marker are looked at,
    which is where EXIF lives.
    """
    i, n = 2, len(buf)
    while i + 4 <= n and buf[i] == 0xFF:
        marker = buf[i + 1]
        if not 0xE0 <= marker <= 0xEF:  # past the application segments
            return 1
        length = (buf[i + 2] << 8) | buf[i + 3]
        if marker == 0xE1 and buf[i + 4 : i + 10] == _EXIF:
            return _tiff_orientation(bytes(buf[i + 10 : i + 2 + length]))
        i += 2 + length
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    order = "little" if tiff[:2] == b"II" else "big"
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return 1
    for k in range(int.from_bytes(tiff[ifd : ifd + 2], order)):
        at = ifd + 2 + 12 * k
        if at + 12 > len(tiff):
            break
        if int.from_bytes(tiff[at : at + 2], order) == _ORIENTATION_TAG:
            value = int.from_bytes(tiff[at + 8 : at + 10], order)
            return value if 1 <= value <= 8 else 1
    return 1
