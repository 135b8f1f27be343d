"""The members of an .npz archive (what numpy.savez writes) read as untrusted input, for
accelnn.io: only the members asked for, each member's .npy header (numpy.lib.format) and its
declared size checked before any of its data is read, and never more read than that header
declares.

    with Archive(fileobj) as archive:         # reads the zip's directory only
        d = archive.declared("W1")            # shape, dtype and size; no data read yet
        a = archive.read(d)                   # exactly d.nbytes bytes of data, CRC checked

Whatever goes wrong in the zip or .npy layers (a damaged directory or local header, another
compression method, a bad CRC, a truncated member, a malformed .npy header, Python objects,
a member whose size disagrees with its header) is raised as `Unreadable`, a ValueError; the
OSErrors of the file itself pass through.
"""

from __future__ import annotations

import contextlib
import errno
import io
import math
import struct
import zipfile
from dataclasses import dataclass

import numpy as np
from numpy.lib import format as npy

MAX_NPY_HEADER = 10_000  # bytes: numpy's own limit for a .npy header it parses safely
COMPRESSIONS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
CHUNK = 1 << 24  # a member's data is read into its array 16 MiB at a time


class Unreadable(ValueError):
    """The archive, or a member of it, cannot be read as an .npz of plain arrays."""


@contextlib.contextmanager
def _zip_layer(what: str):
    """Errors of the zip and .npy layers (anything but the file's own I/O errors) as
    Unreadable naming `what`."""
    try:
        yield
    except Unreadable:
        raise
    except OSError as exc:
        if exc.errno not in (None, errno.EINVAL):  # a real I/O error, not bad offsets/data
            raise
        raise Unreadable(f"{what}: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # zipfile, zlib and numpy raise many kinds on damaged data
        raise Unreadable(f"{what}: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class Declared:
    """What a member's .npy header declares, checked against the member's size."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int  # bytes of .npy header before the data
    info: zipfile.ZipInfo

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _read_exactly(f, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise Unreadable(f"{what}: truncated: {len(data)} of {n} bytes")
    return data


class Archive:
    """An .npz archive open for reading (see the module docstring); `fileobj` is a seekable
    binary file, left open."""

    def __init__(self, fileobj):
        with _zip_layer("not a zip archive"):
            self._zip = zipfile.ZipFile(fileobj)

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __contains__(self, name: str) -> bool:
        return name + ".npy" in self._zip.NameToInfo

    def declared(self, name: str) -> Declared:
        """Member `name`'s shape and dtype, from its .npy header (of at most MAX_NPY_HEADER
        bytes); Unreadable when that header is malformed, the dtype holds Python objects, or
        the member's declared size is not exactly the header's array."""
        what = f"{name}.npy"
        info = self._zip.NameToInfo.get(what)
        if info is None:
            raise Unreadable(f"{what}: no such member")
        if info.compress_type not in COMPRESSIONS:
            raise Unreadable(f"{what}: compression method {info.compress_type} is not "
                             f"supported (only {' or '.join(COMPRESSIONS.values())})")
        if info.flag_bits & 0x1:
            raise Unreadable(f"{what}: the member is encrypted")
        with _zip_layer(what), self._zip.open(info) as f:
            prefix = _read_exactly(f, npy.MAGIC_LEN, what)
            if prefix[:-2] != npy.MAGIC_PREFIX:
                raise Unreadable(f"{what}: not a .npy array")
            version = (prefix[-2], prefix[-1])
            if version not in ((1, 0), (2, 0)):
                raise Unreadable(f"{what}: .npy format version {version} is not supported "
                                 f"(1.0 or 2.0)")
            size = _read_exactly(f, 2 if version == (1, 0) else 4, what)
            length = struct.unpack("<H" if version == (1, 0) else "<I", size)[0]
            if length > MAX_NPY_HEADER:
                raise Unreadable(f"{what}: a .npy header of {length} bytes (at most "
                                 f"{MAX_NPY_HEADER})")
            head = io.BytesIO(prefix + size + _read_exactly(f, length, what))
            npy.read_magic(head)
            parse = npy.read_array_header_1_0 if version == (1, 0) else \
                npy.read_array_header_2_0
            shape, fortran_order, dtype = parse(head, max_header_size=MAX_NPY_HEADER)
            if not all(isinstance(n, int) and n >= 0 for n in shape):
                raise Unreadable(f"{what}: bad shape {shape}")
        if dtype.hasobject:
            raise Unreadable(f"{what} holds Python objects (dtype {dtype}), which are never "
                             f"unpickled")
        if dtype.itemsize == 0:
            raise Unreadable(f"{what}: dtype {dtype} has no size")
        d = Declared(name, tuple(shape), dtype, fortran_order, len(head.getvalue()), info)
        if info.file_size != d.offset + d.nbytes:
            raise Unreadable(f"{what}: its header declares {d.nbytes} bytes of data (shape "
                             f"{d.shape}, dtype {dtype}), but the member holds "
                             f"{info.file_size - d.offset}")
        return d

    def read(self, d: Declared) -> np.ndarray:
        """The array `d` declares: a new writable array, read a chunk at a time into its own
        buffer (the member's CRC is checked at its end)."""
        what = f"{d.name}.npy"
        buf = bytearray(d.nbytes)
        view = memoryview(buf)
        with _zip_layer(what), self._zip.open(d.info) as f:
            _read_exactly(f, d.offset, what)
            for lo in range(0, d.nbytes, CHUNK):
                n = f.readinto(view[lo:lo + CHUNK])
                if n != min(CHUNK, d.nbytes - lo):
                    raise Unreadable(f"{what}: truncated data")
            if f.read(1):
                raise Unreadable(f"{what}: more data than its header declares")
        arr = np.frombuffer(buf, d.dtype) if d.nbytes else np.empty(0, d.dtype)
        return arr.reshape(d.shape, order="F" if d.fortran_order else "C")
