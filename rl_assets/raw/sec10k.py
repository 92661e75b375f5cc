"""SEC 10-K tables: ``sec10k_tables/<company>/<table_name>.json`` (pandas ``to_json`` column orientation,
one table per file = one record) and ``sec10k_tables/*.json`` description maps
(``{"<company>/<table_name>": {"description": ...}}``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rl_assets.raw.common import (
    MAX_CELL_CHARS, MAX_TEXT_CHARS, Collector, Progress, cell_text, is_blank, is_scalar, oversized_cell,
    table_emptiness,
)
from rl_assets.raw.reading import FileRejected, RepeatedKeys, read_document, record_problem, rel_path, sec10k_description_files

_ROW_KEY = re.compile(r"0|[1-9]\d*")


def load_sec10k(files: list[Path], raw_root: Path, col: Collector, progress: Progress) -> None:
    descriptions = _read_descriptions(raw_root, col, progress)
    seen: set[str] = set()
    for i, path in enumerate(files, 1):
        rel = rel_path(path, raw_root)
        company, table_name = path.parent.name, path.stem
        key = f"{company}/{table_name}"
        col.records += 1
        if progress and (i % 100 == 0 or i == len(files)):
            progress(f"sec10k: file {i}/{len(files)} {rel}")
        try:
            data = read_document(path)
        except FileRejected as e:
            col.reject(rel, key, e.reason, e.detail)
            continue
        problem = record_problem(data, where=key)
        if problem:
            col.reject(rel, key, *problem)
            continue
        if key in seen:  # cannot happen with the folder layout; kept for safety
            col.reject(rel, key, "duplicate_id", f"table {key} already loaded")
            continue
        seen.add(key)
        shape = _shape_problem(data)
        if shape:
            col.reject(rel, key, "bad_format", shape)
            continue
        columns = list(data.keys())
        row_keys = sorted({int(r) for c in data.values() for r in c})
        rows = [[data[c].get(str(r)) for c in columns] for r in row_keys]
        # the column names act as the header row
        oversized = oversized_cell([columns] + rows)
        if oversized:
            col.reject(rel, key, "oversized_field", f"table {key}: {oversized.replace('row 0,', 'header,')}")
            continue
        empty = table_emptiness([columns] + rows, header_rows=1) if columns else "no columns"
        if empty:
            col.reject(rel, key, "empty_table", f"table {key}: {empty}")
            continue
        col.add("sec10k_tables", (company, table_name, descriptions.get(key), len(row_keys), len(columns), rel))
        for ci, cname in enumerate(columns):
            cells = data[cname]
            for r in row_keys:
                col.add("sec10k_cells", (company, table_name, r, ci, cname, cell_text(cells.get(str(r)))))
        col.records_loaded += 1


def _read_descriptions(raw_root: Path, col: Collector, progress: Progress) -> dict[str, str | None]:
    descriptions: dict[str, str | None] = {}
    for path in sec10k_description_files(raw_root):
        rel = rel_path(path, raw_root)
        try:
            data = read_document(path)
        except FileRejected as e:
            col.reject(rel, rel, e.reason, e.detail)
            continue
        if not isinstance(data, dict):
            col.reject(rel, rel, "wrong_format", "expected a description map {\"<company>/<table>\": {\"description\": ...}}, "
                                                 f"got {type(data).__name__}")
            continue
        if isinstance(data, RepeatedKeys):  # the map names a table twice: both descriptions are suspect
            col.reject(rel, rel, "duplicate_key", f"table key(s) {data.repeated[:5]} appear more than once")
        for key, entry in data.items():
            desc = entry.get("description") if isinstance(entry, dict) else None
            if not isinstance(entry, dict) or not (desc is None or isinstance(desc, str)):
                col.reject(rel, key, "bad_format", "description entry must be an object with a string 'description'")
                continue
            problem = record_problem({"description": desc}, text_limit=MAX_TEXT_CHARS, where=key)
            if problem:
                col.reject(rel, key, *problem)
                continue
            if isinstance(data, RepeatedKeys) and key in data.repeated:
                continue
            descriptions.setdefault(key, None if is_blank(desc) else desc)  # the first file (by name) wins
        if progress:
            progress(f"sec10k: read {len(data)} descriptions from {rel}")
    return descriptions


def _shape_problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return f"expected an object of columns, got {type(data).__name__}"
    row_sets = []
    for cname, cells in data.items():
        if not isinstance(cells, dict):
            return f"column {cname[:MAX_CELL_CHARS]!r} is {type(cells).__name__}, expected an object of row -> cell"
        for r, v in cells.items():
            if not _ROW_KEY.fullmatch(r):
                return f"column {cname[:80]!r} has non-integer row key {r[:80]!r}"
            if not is_scalar(v):
                return f"cell ({cname[:80]!r}, {r}) is {type(v).__name__}, expected text"
        row_sets.append(set(cells))
    if row_sets and any(s != row_sets[0] for s in row_sets[1:]):
        return "columns have different row keys"
    return None
