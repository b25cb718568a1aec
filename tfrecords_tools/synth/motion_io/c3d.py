"""C3D reader: labelled 3D points (markers, joint centres) with gaps marked missing.

The file is 512-byte blocks. Header (16-bit words, 1-based): word 1 byte 1 = first
parameter block, byte 2 = 0x50; word 2 = number of points; word 3 = analog values per
3D frame; words 4/5 = first/last frame; words 7-8 = scale (float; negative = float
storage); word 9 = first data block; words 11-12 = frame rate (float).

Parameter section: 4 bytes (byte 2 = 0x50, byte 4 = processor: 84 Intel little-endian,
85 DEC (VAX floats), 86 MIPS big-endian), then records: int8 name length (negative =
locked), int8 group id (negative = a group, positive = a parameter of that group), name,
int16 offset to the next record (from the offset word; 0 = last); a parameter then has
int8 type (-1 char, 1 byte, 2 int16, 4 float), uint8 number of dimensions, the dimensions
(first varies fastest) and the data. Used: ``POINT:USED``, ``POINT:LABELS`` (+
``LABELS2``...), ``POINT:SCALE``, ``POINT:RATE``, ``POINT:UNITS``, ``POINT:DATA_START``, ``TRIAL:ACTUAL_START_FIELD``/``ACTUAL_END_FIELD``
(frame numbers beyond 65535).

Data: per frame, per point X, Y, Z and a 4th word (int16 storage: integers times
|scale|, 4th word high byte = camera mask, low byte = residual; float storage: floats);
a negative 4th word marks the point invalid (a gap). Analog samples follow each frame and
are skipped. All-zero coordinates are also read as a gap (what several writers store).
Z is up by convention (Vicon, Qualisys).
"""
from __future__ import annotations

import struct

import numpy as np

from tfrecords_tools.synth.motion_io.source import RawMotion, fail

_UNITS_MM = {"mm": 1.0, "millimeters": 1.0, "millimetres": 1.0, "cm": 10.0, "m": 1000.0,
             "meters": 1000.0, "metres": 1000.0, "in": 25.4, "inch": 25.4, "inches": 25.4}
_TYPES = {-1: 1, 1: 1, 2: 2, 4: 4}


def _dec_to_ieee(raw: np.ndarray) -> np.ndarray:
    """DEC (VAX F) floats, as little-endian uint32 words, to IEEE float32 values: swap
    the 16-bit halves, then the same bits as IEEE are 4 times the value."""
    words = raw.astype(np.uint32)
    swapped = ((words & 0xFFFF) << 16) | (words >> 16)
    return swapped.view(np.float32) / 4.0


class _Reader:
    def __init__(self, path: str, data: bytes, endian: str, dec: bool):
        self.path, self.data, self.endian, self.dec = path, data, endian, dec

    def _check(self, pos, size):
        if pos < 0 or pos + size > len(self.data):
            raise fail(self.path, f"truncated: needs byte {pos + size}, file has "
                                  f"{len(self.data)} (broken parameter section?)")

    def int(self, pos, fmt):
        self._check(pos, struct.calcsize(fmt))
        return struct.unpack_from(self.endian + fmt, self.data, pos)[0]

    def floats(self, pos, count):
        self._check(pos, 4 * count)
        if self.dec:
            return _dec_to_ieee(np.frombuffer(self.data, "<u4", count, pos)).astype(np.float64)
        return np.frombuffer(self.data, self.endian + "f4", count, pos).astype(np.float64)


def _parameters(r: _Reader, start: int, blocks: int) -> dict:
    """{(GROUP, NAME): (type, dims, payload bytes position)}."""
    groups, params = {}, {}
    end = start + 512 * max(blocks, 1)
    pos = start + 4
    while pos + 2 <= min(end, len(r.data)):
        nlen, gid = r.int(pos, "b"), r.int(pos + 1, "b")
        if nlen == 0 or gid == 0:
            break
        name = r.data[pos + 2:pos + 2 + abs(nlen)].decode("ascii", "replace").upper().strip()
        q = pos + 2 + abs(nlen)
        offset = r.int(q, "h")
        if gid < 0:
            groups[-gid] = name
        else:
            kind, ndim = r.int(q + 2, "b"), r.int(q + 3, "B")
            if kind not in _TYPES:
                raise fail(r.path, f"broken parameter section: parameter {name} has type "
                                   f"{kind}, expected -1, 1, 2 or 4")
            dims = tuple(r.data[q + 4:q + 4 + ndim])
            params[(gid, name)] = (kind, dims, q + 4 + ndim)
        if offset == 0:
            break
        if offset < 0:
            raise fail(r.path, f"broken parameter section: negative offset after {name}")
        pos = q + offset
    return {(groups.get(g, str(g)), n): v for (g, n), v in params.items()}


def _value(r: _Reader, param):
    kind, dims, pos = param
    count = int(np.prod(dims)) if dims else 1
    if kind == -1:
        width = dims[0] if dims else 1
        n = count // width if width else 0
        r._check(pos, count)
        return [r.data[pos + i * width:pos + (i + 1) * width].decode("latin-1").strip()
                for i in range(n)]
    if kind == 4:
        return r.floats(pos, count)
    if kind == 2:
        r._check(pos, 2 * count)
        return np.frombuffer(r.data, r.endian + "i2", count, pos).astype(np.int64)
    r._check(pos, count)
    return np.frombuffer(r.data, "u1", count, pos).astype(np.int64)


def read(path: str) -> RawMotion:
    """Reads a C3D file's 3D points (file units, Z up); gaps are NaN.

    Raises:
      MotionFileError: not a C3D file, an unsupported processor type, a broken parameter
        section or a truncated data section.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise fail(path, f"cannot be read ({e.strerror})") from None
    if len(data) < 512 or data[1] != 0x50:
        raise fail(path, "not a C3D file (byte 2 of the header is not 0x50)")
    pstart = (data[0] - 1) * 512
    if pstart < 512 or pstart + 4 > len(data):
        raise fail(path, f"parameter block {data[0]} is outside the file")
    processor = data[pstart + 3]
    if processor not in (84, 85, 86):
        raise fail(path, f"unknown processor type {processor}; expected 84 (Intel), 85 (DEC) "
                         f"or 86 (MIPS)")
    r = _Reader(path, data, ">" if processor == 86 else "<", processor == 85)
    params = _parameters(r, pstart, data[pstart + 2])
    n_points = r.int(2, "H")
    analog = r.int(4, "H")
    first, last = r.int(6, "H"), r.int(8, "H")
    scale = float(r.floats(12, 1)[0])
    start_block = r.int(16, "H")
    rate = float(r.floats(20, 1)[0])

    def get(name, default=None):
        p = params.get(("POINT", name))
        return _value(r, p) if p is not None else default

    used = get("USED")
    if used is not None and len(used):
        n_points = int(used[0]) & 0xFFFF
    scale = float(get("SCALE", [scale])[0])
    rate = float(get("RATE", [rate])[0])
    ds = get("DATA_START")
    if ds is not None and len(ds):
        start_block = int(ds[0]) & 0xFFFF
    labels = list(get("LABELS", []))
    k = 2
    while len(labels) < n_points and ("POINT", f"LABELS{k}") in params:
        labels += get(f"LABELS{k}")
        k += 1
    labels = [lab or f"P{i + 1}" for i, lab in enumerate(labels[:n_points])]
    labels += [f"P{i + 1}" for i in range(len(labels), n_points)]
    units = get("UNITS", [""])
    unit = units[0].strip().lower() if units else ""
    if rate <= 0:
        raise fail(path, f"POINT:RATE is {rate}; expected a positive frame rate")
    if n_points == 0:
        raise fail(path, "holds no 3D points")

    floats = scale < 0
    word = 4 if floats else 2
    stride = (4 * n_points + analog) * word
    frames = last - first + 1
    # Header frame numbers are 16-bit; longer trials store 32-bit ones (two unsigned
    # 16-bit words, low first) in TRIAL:ACTUAL_START_FIELD / ACTUAL_END_FIELD.
    field = [params.get(("TRIAL", f"ACTUAL_{k}_FIELD")) for k in ("START", "END")]
    if all(f is not None for f in field):
        lo_hi = [np.asarray(_value(r, f)).astype(np.int64) & 0xFFFF for f in field]
        if all(len(v) >= 2 for v in lo_hi):
            start, end = (int(v[0] + 65536 * v[1]) for v in lo_hi)
            frames = max(frames, end - start + 1)
    offset = (start_block - 1) * 512
    available = (len(data) - offset) // stride if offset < len(data) else 0
    if frames < 1 or available < frames:
        raise fail(path, f"truncated data: the header declares {frames} frames from block "
                         f"{start_block}, the file holds {max(available, 0)}")
    if floats:
        flat = r.floats(offset, frames * stride // 4)
    else:
        flat = np.frombuffer(data, r.endian + "i2", frames * stride // 2, offset).astype(
            np.float64)
    block = flat.reshape(frames, -1)[:, :4 * n_points].reshape(frames, n_points, 4)
    xyz = block[..., :3] * (1.0 if floats else abs(scale))
    invalid = (block[..., 3] < 0) | np.all(block[..., :3] == 0, axis=-1)
    xyz[invalid] = np.nan
    return RawMotion(path=path, names=tuple(labels), points=xyz, fps=rate,
                     mm_per_unit=_UNITS_MM.get(unit), up_axis="z", format="c3d")
