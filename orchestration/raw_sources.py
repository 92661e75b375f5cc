"""Load the raw data sources (SEC 10-K tables, FinQA, TAT-QA) into DuckDB schema ``raw``.

Plain Python (no Dagster import): the Dagster assets call :func:`load_source` once per
source.  Every file of a source folder is read; every malformed record is written to
``raw.rejected_records`` with a reason, so nothing is dropped silently.

Reasons used in ``raw.rejected_records.reason``:

``bad_json``            file or line is not parseable JSON
``bad_format``          JSON, but the wrong shape / types
``empty_table``         table with no data rows, no value columns or only blank value cells
                        (for FinQA / TAT-QA, each question over such a table is rejected too)
``missing_question``    question text absent or blank
``missing_answer``      answer absent or blank (FinQA: and ``exe_ans`` absent too)
``unparsable_program``  FinQA program / TAT-QA arithmetic derivation that does not parse
                        or cannot be evaluated
``duplicate_id``        a record whose id was already seen in this source (first one kept)

Loading is idempotent: each call re-creates that source's tables and replaces only that
source's rows in ``raw.rejected_records``, in one transaction, with bulk inserts from
pyarrow tables.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import duckdb
import pyarrow as pa

SOURCES = ("sec10k", "finqa", "tatqa")
SOURCE_DIRS = {"sec10k": "sec10k_tables", "finqa": "finqa", "tatqa": "tatqa"}

REJECT_REASONS = (
    "bad_json",
    "bad_format",
    "empty_table",
    "missing_question",
    "missing_answer",
    "unparsable_program",
    "duplicate_id",
)

PROGRESS_EVERY = 200  # records between progress messages

Progress = Callable[[str], None] | None


@dataclass
class LoadResult:
    source: str
    content_hash: str  # sha256 hex over sorted (relative path, file bytes) of every input file
    files: list[str]  # relative paths read
    counts: dict[str, int]  # rows written per raw table
    rejected: int  # rows written to raw.rejected_records for this source
    rejected_by_reason: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# Table schemas (explicit types so that empty sources still create well-typed tables)
# --------------------------------------------------------------------------------------

V, I, D = "VARCHAR", "INTEGER", "DOUBLE"
_PA = {V: pa.string(), I: pa.int32(), D: pa.float64()}

REJECTED_COLUMNS = [("source", V), ("source_file", V), ("record_key", V), ("reason", V), ("detail", V)]

TABLE_SCHEMAS: dict[str, dict[str, list[tuple[str, str]]]] = {
    "sec10k": {
        "sec10k_tables": [
            ("company", V), ("table_name", V), ("description", V),
            ("n_rows", I), ("n_cols", I), ("source_file", V),
        ],
        "sec10k_cells": [
            ("company", V), ("table_name", V), ("row_index", I), ("column_index", I),
            ("column_name", V), ("cell_text", V),
        ],
    },
    "finqa": {
        "finqa_questions": [
            ("id", V), ("report_id", V), ("ticker", V), ("year", I), ("page", V),
            ("original_split", V), ("question", V), ("answer", V), ("exe_ans", D),
            ("exe_ans_text", V), ("program", V), ("program_steps", V), ("program_value", D),
            ("program_ops", V), ("gold_inds", V), ("source_file", V),
        ],
        "finqa_tables": [
            ("report_id", V), ("page", V), ("n_rows", I), ("n_cols", I), ("source_file", V),
        ],
        "finqa_cells": [
            ("report_id", V), ("page", V), ("row_index", I), ("column_index", I),
            ("cell_text", V), ("cell_text_original", V),
        ],
    },
    "tatqa": {
        "tatqa_tables": [("doc_uid", V), ("n_rows", I), ("n_cols", I), ("source_file", V)],
        "tatqa_cells": [("doc_uid", V), ("row_index", I), ("column_index", I), ("cell_text", V)],
        "tatqa_paragraphs": [("doc_uid", V), ("paragraph_order", I), ("text", V)],
        "tatqa_questions": [
            ("uid", V), ("doc_uid", V), ("question_order", I), ("question", V),
            ("answer_json", V), ("answer_text", V), ("answer_value", D), ("answer_type", V),
            ("answer_from", V), ("derivation", V), ("derivation_value", D), ("scale", V),
            ("rel_paragraphs", V), ("source_file", V),
        ],
    },
}


# --------------------------------------------------------------------------------------
# Files and content hash
# --------------------------------------------------------------------------------------


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")


def source_files(source: str, raw_root: Path) -> list[Path]:
    """The data files of a source, sorted (sec10k: per-company table files only)."""
    _check_source(source)
    base = Path(raw_root) / SOURCE_DIRS[source]
    if not base.is_dir():
        return []
    if source == "sec10k":
        files = [p for p in base.glob("*/*.json") if p.is_file()]
    elif source == "finqa":
        files = [p for p in base.glob("*.jsonl") if p.is_file()]
    else:
        files = [p for p in base.glob("*.json") if p.is_file()]
    return sorted(files)


def sec10k_description_files(raw_root: Path) -> list[Path]:
    """``tables_cleaned_all_companies.json``-style description files (top level of sec10k_tables/)."""
    base = Path(raw_root) / SOURCE_DIRS["sec10k"]
    if not base.is_dir():
        return []
    return sorted(p for p in base.glob("*.json") if p.is_file())


def _input_files(source: str, raw_root: Path) -> list[Path]:
    files = source_files(source, raw_root)
    if source == "sec10k":
        files = files + sec10k_description_files(raw_root)
    root = Path(raw_root)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _rel(path: Path, raw_root: Path) -> str:
    return Path(path).relative_to(Path(raw_root)).as_posix()


def _hash_contents(items: Iterable[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for rel, data in sorted(items, key=lambda t: t[0]):
        rb = rel.encode("utf-8")
        h.update(len(rb).to_bytes(8, "big"))
        h.update(rb)
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def content_hash(source: str, raw_root: Path) -> str:
    """sha256 over sorted (relative path, bytes) of every input file of ``source``."""
    _check_source(source)
    return _hash_contents((_rel(p, raw_root), p.read_bytes()) for p in _input_files(source, raw_root))


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


class _Collector:
    """Column-wise row buffers for the tables of one source plus its rejects."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.rows: dict[str, list[tuple]] = {t: [] for t in TABLE_SCHEMAS[source]}
        self.rejects: list[tuple] = []

    def add(self, table: str, row: tuple) -> None:
        self.rows[table].append(row)

    def reject(self, source_file: str, record_key: str | None, reason: str, detail: str) -> None:
        assert reason in REJECT_REASONS, reason
        self.rejects.append((self.source, source_file, record_key, reason, detail[:500]))


def _arrow(columns: list[tuple[str, str]], rows: list[tuple]) -> pa.Table:
    schema = pa.schema([(name, _PA[typ]) for name, typ in columns])
    cols = list(zip(*rows)) if rows else [[] for _ in columns]
    return pa.Table.from_arrays([pa.array(list(c), type=_PA[t]) for c, (_, t) in zip(cols, columns)], schema=schema)


def _ddl(columns: list[tuple[str, str]]) -> str:
    return ", ".join(f'"{n}" {t}' for n, t in columns)


def _is_blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v.strip() == "")


def _cell_text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _table_emptiness(rows: list[list[Any]], header_rows: int) -> str | None:
    """Reason text when a table (list of rows) has no data, else None.

    ``header_rows`` leading rows are headers; column 0 is the row label.
    """
    n_cols = max((len(r) for r in rows), default=0)
    data = rows[header_rows:]
    if not data:
        return f"no data rows ({len(rows)} row(s) in total)"
    if n_cols < 2:
        return f"no value columns ({n_cols} column(s))"
    if all(_is_blank(c) for r in data for c in r[1:]):
        return "all value cells are blank"
    return None


def _json_dumps(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False)


def _fmt_exc(e: Exception) -> str:
    return f"{type(e).__name__}: {e}"


# --------------------------------------------------------------------------------------
# FinQA programs
# --------------------------------------------------------------------------------------

ARITH_OPS = ("add", "subtract", "multiply", "divide", "exp")
FINQA_OPS = ARITH_OPS + ("greater", "table_sum", "table_average", "table_max", "table_min")
_STEP_RE = re.compile(r"\s*([A-Za-z_]+)\s*\(([^()]*)\)\s*")
_NUM_RE = re.compile(r"[-+]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?%?")
_CONST_RE = re.compile(r"const_(m?)(\d+(?:\.\d+)?)")
_REF_RE = re.compile(r"#(\d+)")


class ProgramError(ValueError):
    pass


def parse_finqa_program(program: str) -> list[dict[str, Any]]:
    """Parse ``"op(a, b), op(#0, c)"`` into ``[{"op":..., "args": [...]}, ...]``.

    Raises :class:`ProgramError` for anything outside the FinQA DSL.
    """
    if not isinstance(program, str) or not program.strip():
        raise ProgramError("empty program")
    steps: list[dict[str, Any]] = []
    pos, n = 0, len(program)
    while True:
        m = _STEP_RE.match(program, pos)
        if not m:
            raise ProgramError(f"cannot parse step {len(steps)} at {program[pos:pos + 30]!r}")
        op, raw_args = m.group(1), m.group(2)
        if op not in FINQA_OPS:
            raise ProgramError(f"unknown op {op!r}")
        args = [a.strip() for a in raw_args.split(",")]
        if op.startswith("table_") and len(args) > 2:  # row labels may contain commas
            args = [", ".join(args[:-1]), args[-1]]
        if len(args) != 2 or any(a == "" for a in args):
            raise ProgramError(f"step {len(steps)} ({op}) needs 2 non-empty args, got {args}")
        k = len(steps)
        if op.startswith("table_"):
            if args[1].lower() != "none":
                raise ProgramError(f"step {k} ({op}) second arg must be 'none', got {args[1]!r}")
            if _REF_RE.fullmatch(args[0]):
                raise ProgramError(f"step {k} ({op}) takes a row label, not {args[0]!r}")
        else:
            for a in args:
                _check_arith_arg(a, k)
        steps.append({"op": op, "args": args})
        pos = m.end()
        if pos == n:
            break
        if program[pos] != ",":
            raise ProgramError(f"expected ',' after step {k}, got {program[pos:pos + 20]!r}")
        pos += 1
    return steps


def _check_arith_arg(a: str, k: int) -> None:
    m = _REF_RE.fullmatch(a)
    if m:
        if int(m.group(1)) >= k:
            raise ProgramError(f"step {k} refers to #{m.group(1)} (not an earlier step)")
        return
    if _CONST_RE.fullmatch(a) or _NUM_RE.fullmatch(a):
        return
    raise ProgramError(f"step {k}: bad argument {a!r}")


def _finqa_num(a: str, results: list[float | None]) -> float | None:
    m = _REF_RE.fullmatch(a)
    if m:
        return results[int(m.group(1))]
    m = _CONST_RE.fullmatch(a)
    if m:
        v = float(m.group(2))
        return -v if m.group(1) else v
    pct = a.endswith("%")
    v = float(a.rstrip("%").replace(",", ""))
    return v / 100.0 if pct else v


def execute_finqa_program(steps: list[dict[str, Any]]) -> float | None:
    """Execute parsed steps; None for greater / table_* results, divide by zero or overflow."""
    results: list[float | None] = []
    for s in steps:
        op = s["op"]
        if op not in ARITH_OPS:
            results.append(None)
            continue
        a, b = (_finqa_num(x, results) for x in s["args"])
        if a is None or b is None:
            results.append(None)
            continue
        try:
            if op == "add":
                r = a + b
            elif op == "subtract":
                r = a - b
            elif op == "multiply":
                r = a * b
            elif op == "divide":
                r = a / b
            else:
                r = a ** b
        except (ZeroDivisionError, OverflowError):
            r = None
        if isinstance(r, complex) or (r is not None and not math.isfinite(r)):
            r = None
        results.append(r)
    return results[-1] if results else None


# --------------------------------------------------------------------------------------
# TAT-QA derivations
# --------------------------------------------------------------------------------------

_SCALE_FACTORS = {"thousand": 1e3, "million": 1e6, "billion": 1e9}
_DERIV_NUM = r"(?:\d+(?:\.\d*)?|\.\d+)"


def _preprocess_derivation(expr: str, scale: str | None) -> str:
    s = expr
    for ch in "\u2212\u2013\u2014\u2012\ufe63\uff0d":  # unicode minus / dashes
        s = s.replace(ch, "-")
    s = s.replace("\u00d7", "*").replace("\u00f7", "/").replace("[", "(").replace("]", ")")
    s = s.replace("$", "")
    s = re.sub(r"(?<=\d),(?=\d)", "", s)  # thousands separators
    # accounting negatives: a lone unsigned number in parentheses, "-114 - (71)" = -114 - (-71)
    s = re.sub(r"\(\s*(\d+(?:\.\d+)?)\s*\)", r"(-\1)", s)
    # "60.3 million + 32,137 thousand": convert unit words into the question's scale
    target = _SCALE_FACTORS.get((scale or "").strip().lower(), 1.0)

    def unit(m: re.Match) -> str:
        return repr(float(m.group(1)) * _SCALE_FACTORS[m.group(2).lower()] / target)

    s = re.sub(rf"({_DERIV_NUM})\s*(thousand|million|billion)\b", unit, s, flags=re.I)
    # numbers (canonical float literals; avoids "08" syntax errors), percents -> P(x)
    s = re.sub(rf"{_DERIV_NUM}(?:[eE][-+]?\d+)?(\s*%)?",
               lambda m: f"P({float(m.group(0).rstrip('% '))!r})" if m.group(1) else repr(float(m.group(0))),
               s)
    return s


def evaluate_derivation(expr: str, scale: str | None = None) -> float:
    """Safely evaluate a TAT-QA arithmetic derivation such as ``"(1,452.4 - 1,146.2) / 1,146.2"``.

    Only numbers, ``+ - * / ( )`` (``[ ]`` as parentheses), ``$``, thousands commas, unicode
    minus and ``%`` are accepted; a lone number in parentheses is an accounting negative
    (``-114 - (71)`` = -43, as in the TAT-QA gold answers).  Percentages behave like units: ``(2.7% + 2.0%) / 2`` stays in
    percentage points (2.35), while mixing with plain numbers uses the fraction
    (``(1 - 15%) * 2`` = 1.7, ``1,027 / 11%`` = 9336.36).  Raises ``ValueError`` otherwise.
    """
    if not isinstance(expr, str) or not expr.strip():
        raise ValueError("empty derivation")
    src = _preprocess_derivation(expr, scale)
    try:
        tree = ast.parse(src.strip(), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"syntax error: {e.msg}") from None

    def ev(node: ast.AST) -> tuple[float, bool]:  # (value, is_percent)
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return float(node.value), False
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "P"
                and len(node.args) == 1 and not node.keywords
                and isinstance(node.args[0], ast.Constant) and type(node.args[0].value) in (int, float)):
            return float(node.args[0].value), True
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v, p = ev(node.operand)
            return (-v if isinstance(node.op, ast.USub) else v), p
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
            (a, pa_), (b, pb) = ev(node.left), ev(node.right)
            op = node.op
            if isinstance(op, (ast.Add, ast.Sub)):
                if pa_ != pb:  # "1 - 15%": use the fraction
                    a, b = (a / 100 if pa_ else a), (b / 100 if pb else b)
                    return (a + b if isinstance(op, ast.Add) else a - b), False
                return (a + b if isinstance(op, ast.Add) else a - b), pa_
            if isinstance(op, ast.Mult):
                return (a / 100 if pa_ else a) * (b / 100 if pb else b), False
            if b == 0:
                raise ValueError("division by zero")
            if pa_ and not pb:  # averaging percentages: stays in percentage points
                return a / b, True
            return (a / 100 if pa_ else a) / (b / 100 if pb else b), False
        raise ValueError(f"unsupported syntax: {type(node).__name__}")

    value, _ = ev(tree)
    if not math.isfinite(value):
        raise ValueError("non-finite result")
    return value


_ANSWER_NUM_RE = re.compile(r"\s*([-+\u2212]?)\s*\$?\s*(\d[\d,]*(?:\.\d+)?|\.\d+)\s*%?\s*")


def _answer_number(answer: Any) -> float | None:
    if isinstance(answer, bool):
        return None
    if isinstance(answer, (int, float)):
        return float(answer) if math.isfinite(answer) else None
    if isinstance(answer, list) and len(answer) == 1:
        return _answer_number(answer[0])
    if isinstance(answer, str):
        m = _ANSWER_NUM_RE.fullmatch(answer)
        if m and re.fullmatch(r"\d{1,3}(,\d{3})*(\.\d+)?|\d+(\.\d+)?|\.\d+", m.group(2)):
            v = float(m.group(2).replace(",", ""))
            return -v if m.group(1) in ("-", "\u2212") else v
    return None


# --------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------


def _read_json_file(path: Path, rel: str, col: _Collector, key: str | None = None) -> tuple[bool, Any]:
    try:
        return True, json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        col.reject(rel, key if key is not None else rel, "bad_json", f"file is not valid JSON: {_fmt_exc(e)}")
        return False, None


def _load_sec10k(files: list[Path], raw_root: Path, col: _Collector, progress: Progress) -> None:
    descriptions: dict[str, str | None] = {}
    for path in sec10k_description_files(raw_root):
        rel = _rel(path, raw_root)
        ok, data = _read_json_file(path, rel, col)
        if not ok:
            continue
        if not isinstance(data, dict):
            col.reject(rel, rel, "bad_format", f"descriptions file must be an object, got {type(data).__name__}")
            continue
        for key, entry in data.items():
            if not isinstance(entry, dict) or not (entry.get("description") is None or isinstance(entry.get("description"), str)):
                col.reject(rel, key, "bad_format", "description entry must be an object with a string 'description'")
                continue
            desc = entry.get("description")
            descriptions.setdefault(key, None if _is_blank(desc) else desc)
        if progress:
            progress(f"sec10k: read {len(data)} descriptions from {rel}")

    seen: set[str] = set()
    for i, path in enumerate(files, 1):
        rel = _rel(path, raw_root)
        company, table_name = path.parent.name, path.stem
        key = f"{company}/{table_name}"
        if progress and (i % 100 == 0 or i == len(files)):
            progress(f"sec10k: file {i}/{len(files)} {rel}")
        ok, data = _read_json_file(path, rel, col, key)
        if not ok:
            continue
        if key in seen:  # cannot happen with the folder layout; kept for safety
            col.reject(rel, key, "duplicate_id", f"table {key} already loaded")
            continue
        seen.add(key)
        problem = _sec10k_shape_problem(data)
        if problem:
            col.reject(rel, key, "bad_format", problem)
            continue
        columns = list(data.keys())
        row_keys = sorted({int(r) for c in data.values() for r in c}, key=int)
        rows = [[data[c].get(str(r), data[c].get(r)) for c in columns] for r in row_keys]
        # the column names act as the header row
        empty = _table_emptiness([columns] + rows, header_rows=1) if columns else "no columns"
        if empty:
            col.reject(rel, key, "empty_table", f"table {key}: {empty}")
            continue
        col.add("sec10k_tables", (company, table_name, descriptions.get(key), len(row_keys), len(columns), rel))
        for ci, cname in enumerate(columns):
            cells = data[cname]
            for r in row_keys:
                col.add("sec10k_cells", (company, table_name, r, ci, cname, _cell_text(cells.get(str(r)))))


def _sec10k_shape_problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return f"expected an object of columns, got {type(data).__name__}"
    row_sets = []
    for cname, cells in data.items():
        if not isinstance(cells, dict):
            return f"column {cname!r} is {type(cells).__name__}, expected an object of row -> cell"
        for r, v in cells.items():
            if not re.fullmatch(r"0|[1-9]\d*", r):
                return f"column {cname!r} has non-integer row key {r!r}"
            if not _is_scalar(v):
                return f"cell ({cname!r}, {r}) is {type(v).__name__}, expected text"
        row_sets.append(set(cells))
    if row_sets and any(s != row_sets[0] for s in row_sets[1:]):
        return "columns have different row keys"
    return None


_FINQA_ID_RE = re.compile(r"(?P<ticker>[^/]+)/(?P<year>\d{4})/(?P<page>page_\d+)\.pdf-\d+")


def _is_table(t: Any) -> bool:
    return isinstance(t, list) and all(isinstance(r, list) and all(_is_scalar(c) for c in r) for r in t)


def _shapes_match(a: list[list[Any]], b: Any) -> bool:
    return _is_table(b) and len(a) == len(b) and all(len(x) == len(y) for x, y in zip(a, b))


def _load_finqa(files: list[Path], raw_root: Path, col: _Collector, progress: Progress) -> None:
    seen_ids: set[str] = set()
    loaded_tables: set[tuple[str, str]] = set()
    rejected_tables: set[tuple[str, str]] = set()
    n_records = 0
    for path in files:
        rel = _rel(path, raw_root)
        if progress:
            progress(f"finqa: reading {rel}")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            col.reject(rel, rel, "bad_json", f"file is not UTF-8: {_fmt_exc(e)}")
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            n_records += 1
            if progress and n_records % PROGRESS_EVERY == 0:
                progress(f"finqa: {n_records} records ({rel} line {lineno})")
            _finqa_record(line, lineno, rel, col, seen_ids, loaded_tables, rejected_tables)
    if progress:
        progress(f"finqa: {n_records} records read from {len(files)} file(s)")


def _finqa_record(line: str, lineno: int, rel: str, col: _Collector, seen_ids: set[str],
                  loaded_tables: set[tuple[str, str]], rejected_tables: set[tuple[str, str]]) -> None:
    line_key = f"line {lineno}"
    try:
        r = json.loads(line)
    except json.JSONDecodeError as e:
        col.reject(rel, line_key, "bad_json", f"line {lineno}: {_fmt_exc(e)}")
        return
    if not isinstance(r, dict):
        col.reject(rel, line_key, "bad_format", f"line {lineno}: expected an object, got {type(r).__name__}")
        return
    rid = r.get("id")
    if not isinstance(rid, str) or not rid.strip():
        col.reject(rel, line_key, "bad_format", f"line {lineno}: missing or non-string 'id'")
        return
    m = _FINQA_ID_RE.fullmatch(rid)
    if not m:
        col.reject(rel, rid, "bad_format", f"id {rid!r} is not '<TICKER>/<year>/page_<n>.pdf-<k>'")
        return
    table = r.get("table")
    if not _is_table(table):
        col.reject(rel, rid, "bad_format", "'table' must be a list of rows of text cells")
        return
    for fld in ("question", "program"):
        if r.get(fld) is not None and not isinstance(r.get(fld), str):
            col.reject(rel, rid, "bad_format", f"'{fld}' must be a string, got {type(r.get(fld)).__name__}")
            return
    if not _is_scalar(r.get("answer")) or not _is_scalar(r.get("exe_ans")):
        col.reject(rel, rid, "bad_format", "'answer' / 'exe_ans' must be scalars")
        return
    if rid in seen_ids:
        col.reject(rel, rid, "duplicate_id", f"id {rid!r} already seen in this source (line {lineno})")
        return
    seen_ids.add(rid)

    ticker, year, page = m.group("ticker"), int(m.group("year")), m.group("page")
    report_id = f"{ticker}/{year}"
    tkey = (report_id, page)

    empty = _table_emptiness(table, header_rows=1)
    if empty:
        if tkey not in rejected_tables and tkey not in loaded_tables:
            rejected_tables.add(tkey)
            col.reject(rel, f"{report_id}/{page}", "empty_table", f"table {report_id}/{page}: {empty}")
        col.reject(rel, rid, "empty_table", f"question's table {report_id}/{page}: {empty}")
        return

    question = r.get("question")
    if _is_blank(question):
        col.reject(rel, rid, "missing_question", "question is empty or absent")
        return
    answer, exe_ans = r.get("answer"), r.get("exe_ans")
    if _is_blank(answer) and _is_blank(exe_ans):
        col.reject(rel, rid, "missing_answer", "both 'answer' and 'exe_ans' are empty or absent")
        return
    program = r.get("program")
    try:
        steps = parse_finqa_program(program)
    except ProgramError as e:
        col.reject(rel, rid, "unparsable_program", f"program {program!r}: {e}")
        return

    if tkey not in loaded_tables:
        loaded_tables.add(tkey)
        table_ori = r.get("table_ori")
        ori = table_ori if _shapes_match(table, table_ori) else None
        n_cols = max((len(row) for row in table), default=0)
        col.add("finqa_tables", (report_id, page, len(table), n_cols, rel))
        for ri, row in enumerate(table):
            for ci, cell in enumerate(row):
                col.add("finqa_cells", (report_id, page, ri, ci, _cell_text(cell),
                                        _cell_text(ori[ri][ci]) if ori is not None else None))

    if isinstance(exe_ans, bool):
        exe_num = None
    elif isinstance(exe_ans, (int, float)):
        exe_num = float(exe_ans) if math.isfinite(exe_ans) else None
    elif isinstance(exe_ans, str):
        try:
            exe_num = float(exe_ans.replace(",", "").strip())
            exe_num = exe_num if math.isfinite(exe_num) else None
        except ValueError:
            exe_num = None
    else:
        exe_num = None
    ops = list(dict.fromkeys(s["op"] for s in steps))
    gold = r.get("gold_inds")
    col.add("finqa_questions", (
        rid, report_id, ticker, year, page,
        _cell_text(r.get("split")), question, _cell_text(answer), exe_num, _cell_text(exe_ans),
        program, _json_dumps(steps), execute_finqa_program(steps), ",".join(ops),
        _json_dumps(gold) if gold is not None else None, rel,
    ))


def _load_tatqa(files: list[Path], raw_root: Path, col: _Collector, progress: Progress) -> None:
    seen_tables: set[str] = set()
    seen_questions: set[str] = set()
    n_questions = 0
    for path in files:
        rel = _rel(path, raw_root)
        if progress:
            progress(f"tatqa: reading {rel}")
        ok, docs = _read_json_file(path, rel, col)
        if not ok:
            continue
        if not isinstance(docs, list):
            col.reject(rel, rel, "bad_format", f"expected a list of documents, got {type(docs).__name__}")
            continue
        for di, doc in enumerate(docs, 1):
            n_questions += _tatqa_doc(doc, di, rel, col, seen_tables, seen_questions)
            if progress and di % 50 == 0:
                progress(f"tatqa: {di}/{len(docs)} documents, {n_questions} questions ({rel})")
    if progress:
        progress(f"tatqa: {n_questions} questions read from {len(files)} file(s)")


def _tatqa_doc(doc: Any, di: int, rel: str, col: _Collector, seen_tables: set[str], seen_questions: set[str]) -> int:
    doc_key = f"doc {di}"
    if not isinstance(doc, dict):
        col.reject(rel, doc_key, "bad_format", f"document {di} is {type(doc).__name__}, expected an object")
        return 0
    questions = doc.get("questions")
    if questions is None:
        questions = []
    tbl = doc.get("table")
    doc_uid = tbl.get("uid") if isinstance(tbl, dict) else None
    table_reason: str | None = None
    table_detail = ""
    if not isinstance(tbl, dict) or not isinstance(doc_uid, str) or not doc_uid.strip():
        table_reason, table_detail = "bad_format", f"document {di}: 'table' must be an object with a string 'uid'"
    elif not _is_table(tbl.get("table")):
        table_reason, table_detail = "bad_format", f"table {doc_uid}: 'table.table' must be a list of rows of text cells"
    elif not isinstance(questions, list) or not isinstance(doc.get("paragraphs", []), list):
        table_reason, table_detail = "bad_format", f"document {doc_uid}: 'questions' / 'paragraphs' must be lists"
        questions = questions if isinstance(questions, list) else []
    elif doc_uid in seen_tables:
        table_reason, table_detail = "duplicate_id", f"table uid {doc_uid} already seen in this source"
    else:
        empty = _table_emptiness(tbl["table"], header_rows=1)
        if empty:
            table_reason, table_detail = "empty_table", f"table {doc_uid}: {empty}"
    if isinstance(doc_uid, str) and doc_uid.strip():
        seen_tables.add(doc_uid)
    table_key = doc_uid if isinstance(doc_uid, str) and doc_uid.strip() else doc_key

    if table_reason:
        col.reject(rel, table_key, table_reason,
                   f"{table_detail} (document with {len(doc.get('paragraphs') or []) if isinstance(doc.get('paragraphs'), list) else 0} paragraph(s) not loaded)")
    else:
        rows = tbl["table"]
        col.add("tatqa_tables", (doc_uid, len(rows), max((len(r) for r in rows), default=0), rel))
        for ri, row in enumerate(rows):
            for ci, cell in enumerate(row):
                col.add("tatqa_cells", (doc_uid, ri, ci, _cell_text(cell)))
        for pi, p in enumerate(doc.get("paragraphs") or [], 1):
            if not isinstance(p, dict) or not (p.get("text") is None or isinstance(p.get("text"), str)):
                col.reject(rel, f"{doc_uid} paragraph {pi}", "bad_format", "paragraph must be an object with string 'text'")
                continue
            order = p.get("order")
            col.add("tatqa_paragraphs", (doc_uid, order if isinstance(order, int) and not isinstance(order, bool) else pi, p.get("text")))

    for qi, q in enumerate(questions, 1):
        _tatqa_question(q, qi, doc_uid, table_key, table_reason, rel, col, seen_questions)
    return len(questions)


def _tatqa_question(q: Any, qi: int, doc_uid: str | None, table_key: str, table_reason: str | None,
                    rel: str, col: _Collector, seen: set[str]) -> None:
    if not isinstance(q, dict) or not isinstance(q.get("uid"), str) or not q["uid"].strip():
        col.reject(rel, f"{table_key} question {qi}", "bad_format", "question must be an object with a string 'uid'")
        return
    uid = q["uid"]
    for fld in ("question", "derivation", "answer_type", "answer_from", "scale"):
        if q.get(fld) is not None and not isinstance(q.get(fld), str):
            col.reject(rel, uid, "bad_format", f"'{fld}' must be a string, got {type(q.get(fld)).__name__}")
            return
    answer = q.get("answer")
    if not (_is_scalar(answer) or (isinstance(answer, list) and all(_is_scalar(a) for a in answer))):
        col.reject(rel, uid, "bad_format", "'answer' must be text, a number or a list of those")
        return
    if uid in seen:
        col.reject(rel, uid, "duplicate_id", f"question uid {uid} already seen in this source")
        return
    seen.add(uid)
    if table_reason:
        col.reject(rel, uid, table_reason, f"its table {table_key} was rejected ({table_reason})")
        return
    if _is_blank(q.get("question")):
        col.reject(rel, uid, "missing_question", "question is empty or absent")
        return
    if _is_blank(answer) or (isinstance(answer, list) and all(_is_blank(a) for a in answer)):
        col.reject(rel, uid, "missing_answer", "answer is empty or absent")
        return
    derivation = q.get("derivation")
    deriv_value = None
    if q.get("answer_type") == "arithmetic":
        try:
            deriv_value = evaluate_derivation(derivation, q.get("scale"))
        except ValueError as e:
            col.reject(rel, uid, "unparsable_program", f"derivation {derivation!r}: {e}")
            return
    if isinstance(answer, list):
        answer_text = "; ".join("" if a is None else _cell_text(a) for a in answer)
    else:
        answer_text = _cell_text(answer)
    order = q.get("order")
    rel_par = q.get("rel_paragraphs")
    col.add("tatqa_questions", (
        uid, doc_uid, order if isinstance(order, int) and not isinstance(order, bool) else qi,
        q.get("question"), _json_dumps(answer), answer_text, _answer_number(answer),
        q.get("answer_type"), q.get("answer_from"), derivation, deriv_value, q.get("scale"),
        _json_dumps(rel_par) if rel_par is not None else None, rel,
    ))


_LOADERS = {"sec10k": _load_sec10k, "finqa": _load_finqa, "tatqa": _load_tatqa}


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------


def load_source(con: duckdb.DuckDBPyConnection, source: str, raw_root: Path,
                progress: Callable[[str], None] | None = None) -> LoadResult:
    """(Re)load one source into schema ``raw``; idempotent, replaces only this source's data."""
    _check_source(source)
    raw_root = Path(raw_root)
    inputs = _input_files(source, raw_root)
    rels = [_rel(p, raw_root) for p in inputs]
    # hash the bytes as of this load (reads each file once more; files are small)
    digest = _hash_contents((r, p.read_bytes()) for r, p in zip(rels, inputs))
    if progress:
        progress(f"{source}: {len(inputs)} input file(s) under {raw_root / SOURCE_DIRS[source]}")

    col = _Collector(source)
    _LOADERS[source](source_files(source, raw_root), raw_root, col, progress)

    counts: dict[str, int] = {}
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("CREATE SCHEMA IF NOT EXISTS raw")
        con.execute(f"CREATE TABLE IF NOT EXISTS raw.rejected_records ({_ddl(REJECTED_COLUMNS)})")
        con.execute("DELETE FROM raw.rejected_records WHERE source = ?", [source])
        for table, columns in TABLE_SCHEMAS[source].items():
            con.execute(f"CREATE OR REPLACE TABLE raw.{table} ({_ddl(columns)})")
            _insert(con, f"raw.{table}", columns, col.rows[table])
            counts[table] = len(col.rows[table])
        _insert(con, "raw.rejected_records", REJECTED_COLUMNS, col.rejects)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise

    by_reason = dict(sorted(Counter(r[3] for r in col.rejects).items()))
    if progress:
        progress(f"{source}: loaded {counts}; rejected {len(col.rejects)} {by_reason}")
    return LoadResult(source=source, content_hash=digest, files=rels, counts=counts,
                      rejected=len(col.rejects), rejected_by_reason=by_reason)


def _insert(con: duckdb.DuckDBPyConnection, target: str, columns: list[tuple[str, str]], rows: list[tuple]) -> None:
    if not rows:
        return
    view = "__raw_sources_batch"
    con.register(view, _arrow(columns, rows))
    try:
        names = ", ".join(f'"{n}"' for n, _ in columns)
        con.execute(f"INSERT INTO {target} ({names}) SELECT {names} FROM {view}")
    finally:
        con.unregister(view)
