"""Reading one task's file for `pb gather` (gather.py): CSV / TSV (a header or none: sniffed),
JSON (an object, a list of objects or of values), JSON lines, or plain numbers (one or more a
line, separated by spaces or commas). A file that is none of these, or is inconsistent (rows of
different lengths), raises Malformed with the line and what is wrong: it is listed, never
skipped in silence.

Rows are (columns, rows of values): numbers become int or float (NaN, Inf and R's NA read as
such: NA and an empty field are missing), other fields stay text. Columns without a header are
`value` (one column) or `col1`, `col2`, ...
"""
from __future__ import annotations

import csv
import io
import json
import math
import re


class Malformed(ValueError):
    """A file that cannot be read as a table: the message says where and why."""


_INT = re.compile(r"[+-]?\d+\Z")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eEdD][+-]?\d+)?\Z")
_SPECIAL = {"nan": math.nan, "+nan": math.nan, "-nan": math.nan, "inf": math.inf,
            "+inf": math.inf, "-inf": -math.inf, "infinity": math.inf,
            "-infinity": -math.inf, "+infinity": math.inf}
_MISSING = {"", "na", "null", "none"}
CSV_SUFFIXES = (".csv", ".tsv", ".tab")
JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")


def number(text: str):
    """The number a field holds, or None."""
    t = text.strip()
    if _INT.match(t):
        return int(t)
    if _FLOAT.match(t):
        return float(t.replace("d", "e").replace("D", "e"))
    return _SPECIAL.get(t.lower())


def cell(text: str):
    t = text.strip()
    if t.lower() in _MISSING:
        return None
    n = number(t)
    return t if n is None else n


def _names(n: int) -> list:
    return ["value"] if n == 1 else [f"col{k + 1}" for k in range(n)]


def _header_names(row) -> list:
    out, seen = [], set()
    for k, h in enumerate(row):
        h = h.strip() or f"col{k + 1}"
        base, j = h, 2
        while h in seen:
            h, j = f"{base}_{j}", j + 1
        seen.add(h)
        out.append(h)
    return out


def _delimiter(first: str, suffix: str) -> str | None:
    if suffix in (".tsv", ".tab"):
        return "\t"
    counts = {d: first.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else None


def _is_header(rows, known_headers) -> bool:
    first = rows[0]
    if any(number(f) is not None or not f.strip() for f in first):
        return False
    if any(number(f) is not None for r in rows[1:] for f in r):
        return True
    return tuple(f.strip() for f in first) in known_headers


def read_delimited(text: str, suffix: str, header, known_headers=()):
    """(columns, rows, header row or None)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    delim = _delimiter(lines[0], suffix)
    if delim is None:
        if all(all(number(f) is not None for f in ln.split()) for ln in lines):
            delim = " "
        else:
            delim = ","
    if delim == " ":
        rows = [ln.split() for ln in lines]
    else:
        try:
            rows = [r for r in csv.reader(io.StringIO(text), delimiter=delim) if any(
                f.strip() for f in r)]
        except csv.Error as e:
            raise Malformed(f"not readable as CSV: {e}") from None
    hdr = _is_header(rows, known_headers) if header is None else header
    head = None
    if hdr:
        head, rows = rows[0], rows[1:]
        cols = _header_names(head)
    else:
        cols = _names(len(rows[0]))
    width = len(cols)
    for k, r in enumerate(rows):
        if len(r) != width:
            line = k + (2 if hdr else 1)
            raise Malformed(f"row {line} has {len(r)} field{'s' * (len(r) != 1)}, "
                            f"{'the header' if hdr else 'row 1'} {width}"
                            + (" (a header line in the middle? give --no-header or --header)"
                               if not hdr and k else ""))
    return cols, [[cell(f) for f in r] for r in rows], (tuple(h.strip() for h in head)
                                                         if head else None)


def _json_rows(obj):
    """Rows of a parsed JSON document: an object, a list of objects, or of values."""
    if isinstance(obj, dict):
        return [obj]
    if isinstance(obj, list):
        if all(isinstance(x, dict) for x in obj):
            return list(obj)
        if all(not isinstance(x, (dict, list)) for x in obj):
            return [{"value": x} for x in obj]
        if all(isinstance(x, list) for x in obj) and len({len(x) for x in obj}) == 1:
            names = _names(len(obj[0]))
            return [dict(zip(names, x)) for x in obj]
        raise Malformed("a JSON list that mixes objects, lists and values")
    return [{"value": obj}]


def read_json(text: str):
    """(columns, rows) of a JSON document or of JSON lines."""
    try:
        recs = _json_rows(json.loads(text))
    except json.JSONDecodeError as whole:
        lines = [(k + 1, ln) for k, ln in enumerate(text.splitlines()) if ln.strip()]
        if len(lines) < 2:
            raise Malformed(f"not JSON: {whole.msg} (line {whole.lineno})") from None
        recs = []
        for k, ln in lines:
            try:
                obj = json.loads(ln)
            except json.JSONDecodeError as e:
                raise Malformed(f"line {k} is not JSON: {e.msg}") from None
            if isinstance(obj, list):
                raise Malformed(f"line {k} is a JSON list; JSON lines hold one object (or "
                                "value) a line")
            recs.append(obj if isinstance(obj, dict) else {"value": obj})
    cols = []
    seen = set()
    for r in recs:
        for c in r:
            if c not in seen:
                seen.add(c)
                cols.append(str(c))
    return cols, [[r.get(c) for c in cols] for r in recs]


def read(raw: bytes, name: str, header=None, known_headers=()):
    """(columns, rows, header or None) of one file's bytes; Malformed when it is not a table."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise Malformed(f"not UTF-8 text (byte {e.start}): a binary file?") from None
    if not text.strip():
        raise Malformed("empty")
    if "\x00" in text:
        raise Malformed("holds NUL bytes: a binary file?")
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    start = text.lstrip()[:1]
    if suffix in JSON_SUFFIXES or (suffix not in CSV_SUFFIXES and start in "{[\""):
        cols, rows = read_json(text)
        return cols, rows, None
    return read_delimited(text, suffix, header, known_headers)
