"""Frames between the daemon and the torch worker: a 4-byte big-endian length, then one msgpack map.

msgpack rather than JSON because the daemon already speaks it (protocol/codec.ts, msgpackr with
plain maps) and because it carries every float64 exactly, -inf and NaN included (a logprob can be
-inf; JSON has no spelling for it). The codec is written here in pure Python so the worker needs
nothing beyond torch; it covers the types the daemon sends (nil, bool, int, float, str, bin,
array, map, and msgpackr's `undefined`) and refuses other extension types.

This module must not import torch: the worker reports a missing torch through these frames.
"""

import struct

MAX_FRAME_BYTES = 1 << 30

_UINTS = ((0xFF, 0xCC, ">B"), (0xFFFF, 0xCD, ">H"), (0xFFFFFFFF, 0xCE, ">I"), ((1 << 64) - 1, 0xCF, ">Q"))
_INTS = ((1 << 7, 0xD0, ">b"), (1 << 15, 0xD1, ">h"), (1 << 31, 0xD2, ">i"), (1 << 63, 0xD3, ">q"))
# Type byte -> struct format of a fixed-size scalar.
_SCALARS = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q", 0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q", 0xCA: ">f", 0xCB: ">d"}
# Type byte -> (kind, struct format of its length field).
_SIZED = {
    0xD9: ("str", ">B"), 0xDA: ("str", ">H"), 0xDB: ("str", ">I"),
    0xC4: ("bin", ">B"), 0xC5: ("bin", ">H"), 0xC6: ("bin", ">I"),
    0xDC: ("array", ">H"), 0xDD: ("array", ">I"),
    0xDE: ("map", ">H"), 0xDF: ("map", ">I"),
}


def _pack_header(out, n, fix_base, fix_limit, sized):
    """Length header of a str/bin/array/map: the fix form when it fits, else 8/16/32-bit."""
    if n < fix_limit:
        out.append(fix_base | n)
        return
    for limit, code, fmt in sized:
        if n <= limit:
            out += struct.pack(">B" + fmt[1:], code, n)
            return
    raise ValueError(f"msgpack: length {n} is too large")


def _pack(obj, out):
    if obj is None:
        out.append(0xC0)
    elif obj is True or obj is False:
        out.append(0xC3 if obj else 0xC2)
    elif isinstance(obj, int):
        if 0 <= obj < 128:
            out.append(obj)
        elif -32 <= obj < 0:
            out.append(obj & 0xFF)
        else:
            for limit, code, fmt in _UINTS if obj > 0 else _INTS:
                if (obj <= limit) if obj > 0 else (obj >= -limit):
                    out += struct.pack(">B" + fmt[1:], code, obj)
                    break
            else:
                raise ValueError(f"msgpack: integer {obj} does not fit 64 bits")
    elif isinstance(obj, float):
        out += struct.pack(">Bd", 0xCB, obj)
    elif isinstance(obj, str):
        data = obj.encode("utf-8")
        _pack_header(out, len(data), 0xA0, 32, ((0xFF, 0xD9, ">B"), (0xFFFF, 0xDA, ">H"), (0xFFFFFFFF, 0xDB, ">I")))
        out += data
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        data = bytes(obj)
        # bin has no fix form: a limit of 0 always takes the sized one.
        _pack_header(out, len(data), 0, 0, ((0xFF, 0xC4, ">B"), (0xFFFF, 0xC5, ">H"), (0xFFFFFFFF, 0xC6, ">I")))
        out += data
    elif isinstance(obj, (list, tuple)):
        _pack_header(out, len(obj), 0x90, 16, ((0xFFFF, 0xDC, ">H"), (0xFFFFFFFF, 0xDD, ">I")))
        for item in obj:
            _pack(item, out)
    elif isinstance(obj, dict):
        _pack_header(out, len(obj), 0x80, 16, ((0xFFFF, 0xDE, ">H"), (0xFFFFFFFF, 0xDF, ">I")))
        for key, value in obj.items():
            _pack(key, out)
            _pack(value, out)
    else:
        raise TypeError(f"msgpack: cannot encode {type(obj).__name__}")


def pack(obj):
    out = bytearray()
    _pack(obj, out)
    return bytes(out)


def _unpack(data, i):
    """Decodes the value at data[i:]; returns (value, index after it)."""
    t = data[i]
    i += 1
    if t <= 0x7F:
        return t, i
    if t >= 0xE0:
        return t - 0x100, i
    if t == 0xC0:
        return None, i
    if t == 0xD4 and data[i:i + 2] == b"\x00\x00":
        return None, i + 2  # msgpackr writes JavaScript's undefined as fixext 1 of type 0: read it as nil
    if t in (0xC2, 0xC3):
        return t == 0xC3, i
    if t in _SCALARS:
        fmt = _SCALARS[t]
        return struct.unpack_from(fmt, data, i)[0], i + struct.calcsize(fmt)
    if 0xA0 <= t <= 0xBF:
        kind, n = "str", t & 0x1F
    elif 0x90 <= t <= 0x9F:
        kind, n = "array", t & 0x0F
    elif 0x80 <= t <= 0x8F:
        kind, n = "map", t & 0x0F
    elif t in _SIZED:
        kind, fmt = _SIZED[t]
        n = struct.unpack_from(fmt, data, i)[0]
        i += struct.calcsize(fmt)
    else:
        raise ValueError(f"msgpack: unsupported type byte 0x{t:02x}")
    if kind in ("str", "bin"):
        if i + n > len(data):
            raise ValueError("msgpack: truncated")
        raw = data[i:i + n]
        return (raw.decode("utf-8") if kind == "str" else bytes(raw)), i + n
    if kind == "array":
        items = []
        for _ in range(n):
            item, i = _unpack(data, i)
            items.append(item)
        return items, i
    result = {}
    for _ in range(n):
        key, i = _unpack(data, i)
        value, i = _unpack(data, i)
        result[key] = value
    return result, i


def unpack(data):
    try:
        value, end = _unpack(data, 0)
    except (IndexError, struct.error) as err:
        raise ValueError(f"msgpack: truncated ({err})") from None
    if end != len(data):
        raise ValueError(f"msgpack: {len(data) - end} trailing bytes")
    return value


def _read_exactly(stream, n):
    chunks = []
    while n > 0:
        chunk = stream.read(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(stream):
    """The next frame's value (a map, in this protocol), or None at a clean end of the stream."""
    header = _read_exactly(stream, 4)
    if header is None:
        return None
    n = int.from_bytes(header, "big")
    if n > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {n} bytes exceeds the limit of {MAX_FRAME_BYTES}")
    body = _read_exactly(stream, n)
    if body is None:
        raise ValueError(f"stream ended inside a frame of {n} bytes")
    return unpack(body)


def write_frame(stream, obj):
    body = pack(obj)
    stream.write(len(body).to_bytes(4, "big") + body)
    stream.flush()
