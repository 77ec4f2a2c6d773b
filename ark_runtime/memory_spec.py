"""MEM_01: the persistence contract in code: `MEMORY_SPEC.yaml`, the canonical JSON that
content hashes are computed over, and the table DDL derived from the spec. The store
(ark_runtime.store) obeys what this module reads; both raise StoreError.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

MEMORY_SPEC = Path(__file__).with_name("MEMORY_SPEC.yaml")


class StoreError(RuntimeError):
    """The store cannot do what was asked (bad input, schema mismatch, missing object)."""


class StoreCorruption(StoreError):
    """A stored object no longer matches its content hash."""



@cache
def load_spec(path: Path = MEMORY_SPEC) -> dict[str, Any]:
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(spec, dict) or "tables" not in spec:
        raise StoreError(f"{path}: not a memory spec (no 'tables')")
    return spec


def canonical_json(payload: Any, spec: Mapping[str, Any] | None = None) -> bytes:
    """The canonical byte form the content hash is computed over."""
    opts = (spec or load_spec())["dedup"]["canonical_json"]
    try:
        text = json.dumps(
            payload,
            sort_keys=opts["sort_keys"],
            separators=tuple(opts["separators"]),
            ensure_ascii=opts["ensure_ascii"],
            allow_nan=opts["allow_nan"],
        )
        encoded = text.encode("utf-8")
    except (TypeError, ValueError) as exc:  # also circular references, lone surrogates
        raise StoreError(f"payload is not canonical JSON: {exc}") from None
    _check_keys(payload)  # after dumps, which has already refused circular structures
    return encoded


def _check_keys(value: Any) -> None:
    # json.dumps would turn {1: x} into {"1": x}: the load would not give back what was saved.
    # (Tuples do become lists; callers pass JSON-mode dumps, so that is accepted.)
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            bad = [k for k in item if not isinstance(k, str)]
            if bad:
                raise StoreError(f"payload is not canonical JSON: non-string key {bad[0]!r}")
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def content_hash(payload: Any, spec: Mapping[str, Any] | None = None) -> str:
    spec = spec or load_spec()
    return hashlib.new(spec["dedup"]["algorithm"], canonical_json(payload, spec)).hexdigest()



def table_ddl(name: str, table: Mapping[str, Any]) -> str:
    parts = [
        f"{col} {c['type']}{'' if c.get('nullable', True) else ' NOT NULL'}"
        for col, c in table["columns"].items()
    ]
    parts.append(f"PRIMARY KEY ({', '.join(table['primary_key'])})")
    parts += [f"UNIQUE ({', '.join(u)})" for u in table.get("unique", [])]
    for col, ref in table.get("foreign_keys", {}).items():
        ref_table, ref_col = ref.split(".")
        parts.append(f"FOREIGN KEY ({col}) REFERENCES {ref_table} ({ref_col})")
    return f"CREATE TABLE IF NOT EXISTS {name} (\n  " + ",\n  ".join(parts) + "\n)"

