"""Parquet parts written without pyarrow, for small runs (a run of a few thousand tasks spends
more importing pyarrow and numpy, 0.3 s of CPU, than on everything else it records).

One row group, one uncompressed PLAIN data page per column, a flat schema of OPTIONAL columns:
int64, double, boolean and UTF-8 strings, and the file's key-value metadata. The column types
are chosen exactly as parts._typed chooses them (the same values give the same Arrow schema,
tested against pyarrow), so DuckDB, pyarrow and the compaction read these parts and pyarrow's
alike; a later compaction rewrites them with zstd. Stdlib only.
"""
from __future__ import annotations

import json
import struct

# Parquet's physical types, encodings, and the compact Thrift protocol's field types
_BOOLEAN, _INT64, _DOUBLE, _BYTE_ARRAY = 0, 2, 5, 6
_PLAIN, _RLE = 0, 3
_T_I32, _T_I64, _T_BINARY, _T_LIST, _T_STRUCT = 5, 6, 8, 9, 12

BOOL, INT, FLOAT, TEXT = "bool", "int64", "float64", "string"
_KIND = {bool: "b", int: "i", float: "f", str: "s"}
_INT64_MIN, _INT64_MAX = -2**63, 2**63 - 1


def typed(values) -> tuple[str, list]:
    """(type, values converted to it) as parts._typed types a column: one JSON scalar type
    as it is (ints and floats together: float64; nothing but None: float64; an int past 64
    bits: the column as float64); any other mix, and nested values, as JSON text."""
    kinds = {_KIND.get(v.__class__, "j") for v in values if v is not None}
    if not kinds or kinds == {"f"} or kinds == {"i", "f"}:
        return FLOAT, [None if v is None else float(v) for v in values]
    if kinds == {"i"}:
        if all(_INT64_MIN <= v <= _INT64_MAX for v in values if v is not None):
            return INT, list(values)
        return FLOAT, [None if v is None else float(v) for v in values]
    if kinds == {"b"}:
        return BOOL, list(values)
    if kinds == {"s"}:
        return TEXT, list(values)
    return TEXT, [None if v is None else (v if isinstance(v, str) else
                                          json.dumps(v, sort_keys=True)) for v in values]


def write(path, columns, metadata: dict | None = None) -> None:
    """columns: [(name, type, values)] with type one of BOOL, INT, FLOAT, TEXT and values of
    that type or None, all of one length. Writes the file at `path` (the caller renames)."""
    n = len(columns[0][2]) if columns else 0
    body = [b"PAR1"]
    pos = 4
    chunks = []
    for name, typ, values in columns:
        if len(values) != n:
            raise ValueError(f"column {name}: {len(values)} values, expected {n}")
        page = _levels(values) + _plain(typ, [v for v in values if v is not None])
        header = _struct([(1, _T_I32, 0), (2, _T_I32, len(page)), (3, _T_I32, len(page)),
                          (5, _T_STRUCT, [(1, _T_I32, n), (2, _T_I32, _PLAIN),
                                          (3, _T_I32, _RLE), (4, _T_I32, _RLE)])])
        chunks.append((name, typ, pos, len(header) + len(page)))
        body += [header, page]
        pos += len(header) + len(page)
    schema = [[(4, _T_BINARY, b"schema"), (5, _T_I32, len(columns))]]
    for name, typ, _ in columns:
        el = [(1, _T_I32, _PHYSICAL[typ]), (3, _T_I32, 1), (4, _T_BINARY, name.encode())]
        if typ == TEXT:  # converted type UTF8 and logical type STRING
            el += [(6, _T_I32, 0), (10, _T_STRUCT, [(1, _T_STRUCT, [])])]
        schema.append(el)
    cols = [[(2, _T_I64, off),
             (3, _T_STRUCT, [(1, _T_I32, _PHYSICAL[typ]), (2, (_T_LIST, _T_I32), [_PLAIN, _RLE]),
                             (3, (_T_LIST, _T_BINARY), [name.encode()]), (4, _T_I32, 0),
                             (5, _T_I64, n), (6, _T_I64, size), (7, _T_I64, size),
                             (9, _T_I64, off)])]
            for name, typ, off, size in chunks]
    total = sum(c[3] for c in chunks)
    meta = [(1, _T_I32, 1), (2, (_T_LIST, _T_STRUCT), schema), (3, _T_I64, n),
            (4, (_T_LIST, _T_STRUCT), [[(1, (_T_LIST, _T_STRUCT), cols), (2, _T_I64, total),
                                        (3, _T_I64, n)]])]
    if metadata:
        meta.append((5, (_T_LIST, _T_STRUCT),
                     [[(1, _T_BINARY, k.encode()), (2, _T_BINARY, v.encode())]
                      for k, v in metadata.items()]))
    meta.append((6, _T_BINARY, b"pushbutton"))
    footer = _struct(meta)
    body += [footer, struct.pack("<I", len(footer)), b"PAR1"]
    with open(path, "wb") as f:
        f.write(b"".join(body))


_PHYSICAL = {BOOL: _BOOLEAN, INT: _INT64, FLOAT: _DOUBLE, TEXT: _BYTE_ARRAY}


def _bits(flags) -> bytes:
    """Booleans packed 8 to a byte, the first in the lowest bit (Parquet's bit order)."""
    k = (len(flags) + 7) // 8
    if not k:
        return b""
    return int("".join("1" if f else "0" for f in reversed(flags)), 2).to_bytes(k, "little")


def _levels(values) -> bytes:
    """The definition levels (1: a value, 0: null) in the RLE / bit-packed hybrid, with their
    length in front (data page v1)."""
    n = len(values)
    if not any(v is None for v in values):
        enc = _varint(n << 1) + b"\x01"  # one run of n ones
    else:
        groups = (n + 7) // 8
        enc = _varint((groups << 1) | 1) + _bits([v is not None for v in values])
    return struct.pack("<I", len(enc)) + enc


def _plain(typ: str, values) -> bytes:
    if typ == INT:
        return struct.pack("<%dq" % len(values), *values)
    if typ == FLOAT:
        return struct.pack("<%dd" % len(values), *values)
    if typ == BOOL:
        return _bits(values)
    return b"".join([_U32(len(d)) + d for d in (v.encode() for v in values)])


_U32 = struct.Struct("<I").pack


# -- the compact Thrift protocol (what Parquet's footer and page headers are written in) ------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _zigzag(n: int) -> bytes:
    return _varint((n << 1) ^ (n >> 63))


def _struct(fields) -> bytes:
    """fields: [(id, type, value)] in rising id order; a list's type is (_T_LIST, element)."""
    out, last = [], 0
    for fid, typ, value in fields:
        code = _T_LIST if isinstance(typ, tuple) else typ
        delta = fid - last
        out.append(bytes([delta << 4 | code]) if 0 < delta <= 15 else
                   bytes([code]) + _zigzag(fid))
        last = fid
        out.append(_value(typ, value))
    out.append(b"\x00")
    return b"".join(out)


def _value(typ, value) -> bytes:
    if isinstance(typ, tuple):
        elem = typ[1]
        head = bytes([len(value) << 4 | elem]) if len(value) < 15 else \
            bytes([0xF0 | elem]) + _varint(len(value))
        return head + b"".join(_value(elem, v) for v in value)
    if typ in (_T_I32, _T_I64):
        return _zigzag(value)
    if typ == _T_BINARY:
        return _varint(len(value)) + value
    if typ == _T_STRUCT:
        return _struct(value)
    raise ValueError(f"thrift type {typ}")
