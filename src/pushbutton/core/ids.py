"""Identity of a task = hash of the canonical JSON of its parameters (as in signac)."""
from __future__ import annotations

import hashlib
import json

_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode


def canonical(params: dict) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8, NaN refused."""
    return _dumps(params)


def task_id(params: dict) -> str:
    """20 hex characters (80 bits): collision odds at 10^6 tasks are ~4e-13."""
    return hashlib.blake2b(_dumps(params).encode(), digest_size=10).hexdigest()


def id_of_canonical(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


def derive_seed(params: dict, rep: int) -> int:
    """Seed for replicate `rep` of a point: deterministic, 31 bits (fits every RNG)."""
    h = hashlib.blake2b(_dumps([params, rep]).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & 0x7FFFFFFF
