"""Arrow arrays of Python values, built from their buffers instead of with pa.array/pa.scalar.

pyarrow's first conversion of Python objects (pa.array, pa.scalar, a Python value handed to a
compute function, take() with a list) imports pandas to ask whether the object is a Series:
0.4-0.7 s, most of what a small run spends harvesting, and a run never needs pandas. Ingest and
the Parquet parts build their arrays here; the values are those JSON holds (None, bool, int,
float, str; nested values are JSON text before they come here).
"""
from __future__ import annotations

import array as _array
import itertools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa


def strings(values) -> "pa.Array":
    """A string array of `values` (str or None); ArrowTypeError for anything else."""
    import pyarrow as pa
    if isinstance(values, list):
        try:  # every value a str, all ASCII (ids, hosts): joined and measured in C
            joined = "".join(values)
        except TypeError:
            joined = None
        if joined is not None and joined.isascii():
            size = len(joined)  # (ASCII: as many bytes as characters)
            typ, code = (pa.string(), "i") if size < 2**31 else (pa.large_string(), "q")
            widths = set(map(len, values))
            if len(widths) == 1 and size:  # task ids: one width, no running sum to take
                offsets = _array.array(code, range(0, size + 1, widths.pop()))
            else:
                offsets = _array.array(code, [0])
                offsets.extend(itertools.accumulate(map(len, values)))
            return pa.Array.from_buffers(typ, len(values), [None, pa.py_buffer(offsets),
                                                            pa.py_buffer(joined.encode())])
    try:
        data = [b"" if v is None else v.encode() for v in values]
    except AttributeError:
        bad = next(v for v in values if v is not None and not isinstance(v, str))
        raise pa.ArrowTypeError(f"expected str, got {type(bad).__name__}") from None
    offsets = _array.array("q", [0])
    offsets.extend(itertools.accumulate(map(len, data)))
    typ = pa.large_string()
    if offsets[-1] < 2**31:
        typ, offsets = pa.string(), _array.array("i", offsets)
    return pa.Array.from_buffers(typ, len(data), [_validity(values), pa.py_buffer(offsets),
                                                   pa.py_buffer(b"".join(data))])


def ints(values) -> "pa.Array":
    """An int64 array of `values` (int or None); OverflowError past 64 bits."""
    import pyarrow as pa
    if isinstance(values, pa.Array):  # row numbers from a compute function
        return values.cast(pa.int64())
    if hasattr(values, "dtype"):  # a numpy array (row numbers): its buffer, not its items
        import numpy as np
        data = np.ascontiguousarray(values, dtype=np.int64)
        return pa.Array.from_buffers(pa.int64(), len(data), [None, pa.py_buffer(data)])
    data = _array.array("q", [0 if v is None else v for v in values])
    return pa.Array.from_buffers(pa.int64(), len(data), [_validity(values), pa.py_buffer(data)])


def floats(values) -> "pa.Array":
    """A float64 array of `values` (numbers or None)."""
    import pyarrow as pa
    try:
        data = _array.array("d", [0.0 if v is None else v for v in values])
    except TypeError as e:
        raise pa.ArrowTypeError(str(e)) from None
    return pa.Array.from_buffers(pa.float64(), len(data), [_validity(values), pa.py_buffer(data)])


def bools(values) -> "pa.Array":
    """A boolean array of `values` (bool or None)."""
    import pyarrow as pa
    return pa.Array.from_buffers(pa.bool_(), len(values),
                                 [_validity(values), pa.py_buffer(_bits(values))])


def array(values, type=None) -> "pa.Array":
    """pa.array(values, type) for the JSON scalars, without pandas: `type` one of null, bool,
    int64, float64, string; None infers it like Arrow does (ints and floats: float64, nothing
    but None: null) and raises ArrowInvalid for a mix Arrow would refuse or nest."""
    import pyarrow as pa
    values = list(values)
    if type is None:
        kinds = {_KIND.get(v.__class__, "j") for v in values if v is not None}
        if not kinds:
            return pa.nulls(len(values))
        if len(kinds) > 1 and kinds != {"i", "f"} or kinds == {"j"}:
            raise pa.ArrowInvalid(f"no single Arrow type for {sorted(kinds)}")
        type = (pa.bool_() if kinds == {"b"} else pa.int64() if kinds == {"i"}
                else pa.string() if kinds == {"s"} else pa.float64())
    build = {pa.bool_(): bools, pa.int64(): ints, pa.float64(): floats, pa.string(): strings}
    if pa.types.is_null(type):
        return pa.nulls(len(values))
    if type not in build:
        raise pa.ArrowNotImplementedError(f"arrays.array: no builder for {type}")
    return build[type](values)


_KIND = {bool: "b", int: "i", float: "f", str: "s"}


def _bits(flags) -> bytearray:
    bits = bytearray((len(flags) + 7) // 8)
    for i, f in enumerate(flags):
        if f:
            bits[i >> 3] |= 1 << (i & 7)
    return bits


def _validity(values):
    """The validity bitmap (None where every value is there)."""
    import pyarrow as pa
    if not any(v is None for v in values):
        return None
    return pa.py_buffer(_bits([v is not None for v in values]))


def to_numpy(arr):
    """An Arrow integer array without nulls (row numbers, positions) as a numpy array on its
    buffer: pyarrow's own to_numpy imports pandas, even for a zero-copy view."""
    import numpy as np
    import pyarrow as pa
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.null_count:
        raise ValueError("to_numpy: the array has nulls")
    dtype = np.dtype(_NUMPY[str(arr.type)])
    if not len(arr):
        return np.zeros(0, dtype=dtype)
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=arr.offset + len(arr))[arr.offset:]


_NUMPY = {"int8": "i1", "int16": "i2", "int32": "i4", "int64": "i8",
          "uint8": "u1", "uint16": "u2", "uint32": "u4", "uint64": "u8"}
