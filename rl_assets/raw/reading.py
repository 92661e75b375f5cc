"""Which files each source reads, their content hash, and decoding them record by record.

Decoding never lets one bad record take others with it: a JSON-lines file is decoded line by line
(a byte that is not UTF-8 rejects that line only); a JSON document is decoded with the undecodable
bytes kept aside, and each record that contains one is rejected alone. Objects with a repeated key
and strings over the size limits are found per record too. A file that is not in the expected
format at all (judged from its first records) is rejected once, as a whole, saying what was expected.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from rl_assets.raw.common import MAX_TEXT_CHARS, SOURCE_DIRS, SOURCES, fmt_exc

SNIFF_RECORDS = 5  # records looked at to decide whether a file is in the expected format


def check_source(source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------


def source_files(source: str, raw_root: Path) -> list[Path]:
    """The record files of a source, sorted: sec10k ``<company>/*.json``; finqa / tatqa ``*.json`` and ``*.jsonl``."""
    check_source(source)
    base = Path(raw_root) / SOURCE_DIRS[source]
    if not base.is_dir():
        return []
    patterns = ["*/*.json"] if source == "sec10k" else ["*.json", "*.jsonl"]
    return sorted(p for pattern in patterns for p in base.glob(pattern) if p.is_file() and not p.name.startswith("."))


def sec10k_description_files(raw_root: Path) -> list[Path]:
    """``tables_cleaned_all_companies.json``-style description maps (top level of sec10k_tables/)."""
    base = Path(raw_root) / SOURCE_DIRS["sec10k"]
    if not base.is_dir():
        return []
    return sorted(p for p in base.glob("*.json") if p.is_file() and not p.name.startswith("."))


def input_files(source: str, raw_root: Path) -> list[Path]:
    """Every file a source reads (sorted by relative path): what its content hash covers."""
    files = source_files(source, raw_root)
    if source == "sec10k":
        files = files + sec10k_description_files(raw_root)
    return sorted(files, key=lambda p: rel_path(p, raw_root))


def ignored_files(source: str, raw_root: Path) -> list[str]:
    """Files under the source's folder that it does not read (wrong extension or place), relative paths."""
    base = Path(raw_root) / SOURCE_DIRS[source]
    if not base.is_dir():
        return []
    read = set(input_files(source, raw_root))
    return sorted(rel_path(p, raw_root) for p in base.rglob("*")
                  if p.is_file() and p not in read and not any(part.startswith(".") for part in p.relative_to(base).parts))


def unclaimed_folders(raw_root: Path) -> list[str]:
    """Entries directly under the raw root that no source reads (e.g. ``convfinqa/``), sorted."""
    root = Path(raw_root)
    if not root.is_dir():
        return []
    claimed = set(SOURCE_DIRS.values())
    return sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir()
                  if p.name not in claimed and not p.name.startswith("."))


def rel_path(path: Path, raw_root: Path) -> str:
    return Path(path).relative_to(Path(raw_root)).as_posix()


def hash_contents(items: Iterable[tuple[str, bytes]]) -> str:
    """SHA-256 over (relative path, bytes) pairs sorted by path, each length-prefixed (8 bytes, big endian)."""
    h = hashlib.sha256()
    for rel, data in sorted(items, key=lambda t: t[0]):
        rb = rel.encode("utf-8")
        h.update(len(rb).to_bytes(8, "big"))
        h.update(rb)
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def content_hash(source: str, raw_root: Path) -> str:
    """The source's content hash: :func:`hash_contents` over every input file (relative paths only)."""
    check_source(source)
    return hash_contents((rel_path(p, raw_root), p.read_bytes()) for p in input_files(source, raw_root))


# --------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------


class RepeatedKeys(dict):
    """A JSON object in which some key appeared more than once (the last value is kept, as json does)."""

    repeated: list[str]


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) == len(keys):
        return dict(pairs)
    obj = RepeatedKeys(pairs)
    obj.repeated = sorted({k for k in keys if keys.count(k) > 1})
    return obj


def decode(data: bytes) -> str:
    """UTF-8 text in which every byte that is not UTF-8 becomes a lone surrogate (found later, per record)."""
    text = data.decode("utf-8", errors="surrogateescape")
    return text[1:] if text.startswith("\ufeff") else text


def loads(text: str) -> Any:
    return json.loads(text, object_pairs_hook=_object_pairs)


def _bad_bytes(text: str) -> str | None:
    found = [c for c in text if "\udc80" <= c <= "\udcff"]
    if not found:
        return None
    first = text.index(found[0])
    shown = " ".join(f"0x{ord(c) - 0xDC00:02x}" for c in found[:3])
    return f"{len(found)} byte(s) that are not UTF-8 ({shown}) at character {first}"


def record_problem(value: Any, text_limit: int = MAX_TEXT_CHARS, where: str = "") -> tuple[str, str] | None:
    """(reason, detail) for the first repeated key, non-UTF-8 byte or over-long string in a record, else None."""
    stack: list[tuple[str, Any]] = [(where or "record", value)]
    while stack:
        path, v = stack.pop()
        if isinstance(v, str):
            bad = _bad_bytes(v)
            if bad:
                return "bad_encoding", f"{path}: {bad}"
            if len(v) > text_limit:
                return "oversized_field", f"{path}: {len(v):,} characters (limit {text_limit:,})"
        elif isinstance(v, dict):
            if isinstance(v, RepeatedKeys):
                return "duplicate_key", f"{path}: key(s) {v.repeated} appear more than once (which value is meant is unknown)"
            for k, item in reversed(list(v.items())):
                bad = _bad_bytes(k)
                if bad:
                    return "bad_encoding", f"{path} key: {bad}"
                stack.append((f"{path}.{k}", item))
        elif isinstance(v, list):
            stack.extend((f"{path}[{i}]", item) for i, item in reversed(list(enumerate(v))))
    return None


@dataclass
class RawRecord:
    key: str  # where the record is in its file: 'line 12' (JSON lines) or 'record 3' (a JSON list)
    value: Any = None  # the decoded JSON value (None when `problem` is set)
    problem: tuple[str, str] | None = None  # (reason, detail): the record cannot be used


class FileRejected(Exception):
    """The whole file is unusable (not JSON, not the expected format)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def read_document(path: Path) -> Any:
    """One JSON document; raises FileRejected('bad_json'). Strings may hold undecodable bytes (see decode)."""
    try:
        return loads(decode(Path(path).read_bytes()))
    except json.JSONDecodeError as e:
        raise FileRejected("bad_json", f"file is not valid JSON: {fmt_exc(e)}") from None


def read_records(path: Path, format_name: str, not_a_record: Callable[[Any], str | None],
                 problem: Callable[[Any, str], tuple[str, str] | None] | None = None) -> list[RawRecord]:
    """The records of a ``.jsonl`` (one JSON object per line) or ``.json`` (a JSON list of objects) file.

    ``not_a_record(value)`` says why a decoded value is not a record of this source (None if it is).
    Raises FileRejected('wrong_format' / 'bad_json') when the file as a whole is not in that format,
    judged from its first SNIFF_RECORDS records; otherwise returns every record, each with its own
    problem if it has one (bad_json / bad_format, and ``problem(value, key)``, by default
    :func:`record_problem`: bad_encoding / duplicate_key / oversized_field).
    """
    path = Path(path)
    text = decode(path.read_bytes())
    check = problem if problem is not None else (lambda value, key: record_problem(value, where=key))
    records = _json_lines(text, format_name) if path.suffix == ".jsonl" else _json_list(text, format_name)
    for r in records:
        if r.problem is None:
            r.problem = check(r.value, r.key)
            if r.problem is not None:
                r.value = None
    sniffed = [r for r in records if r.problem is None][:SNIFF_RECORDS]
    reasons = [not_a_record(r.value) for r in sniffed]
    if sniffed and all(reasons):
        raise FileRejected("wrong_format", f"expected {format_name}; the first {len(sniffed)} record(s) are not: {reasons[0]}")
    return records


def _json_lines(text: str, format_name: str) -> list[RawRecord]:
    records: list[RawRecord] = []
    first_values: list[Any] = []
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        key = f"line {lineno}"
        bad = _bad_bytes(line)
        if bad:
            records.append(RawRecord(key, problem=("bad_encoding", f"{key}: {bad}")))
            continue
        try:
            value = loads(line)
        except json.JSONDecodeError as e:
            records.append(RawRecord(key, problem=("bad_json", f"{key}: {fmt_exc(e)}")))
            if len(first_values) < SNIFF_RECORDS:
                first_values.append(None)
            continue
        if len(first_values) < SNIFF_RECORDS:
            first_values.append(value)
        if not isinstance(value, dict):
            records.append(RawRecord(key, problem=("bad_format", f"{key}: expected a JSON object, got {type(value).__name__}")))
            continue
        records.append(RawRecord(key, value))
    if first_values and not any(isinstance(v, dict) for v in first_values):
        start = text.lstrip()[:1]
        looks = "one JSON document (it starts with '" + start + "')" if start in "[{" else "not JSON"
        raise FileRejected("wrong_format", f"expected JSON lines ({format_name}, one JSON object per line); "
                                           f"none of the first {len(first_values)} lines is a JSON object: the file looks like {looks}")
    return records


def _json_list(text: str, format_name: str) -> list[RawRecord]:
    try:
        value = loads(text)
    except json.JSONDecodeError as e:
        first = text.lstrip().split("\n", 1)[0]
        try:
            is_lines = isinstance(loads(first), dict)
        except json.JSONDecodeError:
            is_lines = False
        if is_lines:
            raise FileRejected("wrong_format", f"expected one JSON document ({format_name}: a JSON list); the file looks like "
                                               "JSON lines (one object per line): name it *.jsonl") from None
        raise FileRejected("bad_json", f"file is not valid JSON: {fmt_exc(e)}") from None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise FileRejected("wrong_format", f"expected {format_name}: a JSON list of objects, got {type(value).__name__}")
    records: list[RawRecord] = []
    for i, item in enumerate(value, 1):
        key = f"record {i}"
        if not isinstance(item, dict):
            records.append(RawRecord(key, problem=("bad_format", f"{key}: expected a JSON object, got {type(item).__name__}")))
            continue
        records.append(RawRecord(key, item))
    return records
