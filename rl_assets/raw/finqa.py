"""FinQA questions: ``finqa/*.jsonl`` (one record per line) and ``finqa/*.json`` (a JSON list of records).

A record is flat (``id, question, answer, exe_ans, program, table, table_ori, gold_inds, ...``, as in
finqa_examples.jsonl) or in the original FinQA release's layout (the question fields inside ``qa``).
Each record carries its page's table; the first good copy of a page's table is loaded.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from rl_assets import programs
from rl_assets.numbers import parse_answer
from rl_assets.raw.common import (
    MAX_QUESTION_CHARS, PROGRESS_EVERY, Collector, Progress, cell_text, is_blank, is_scalar, is_table, json_dumps,
    oversized_cell, oversized_text, table_emptiness,
)
from rl_assets.raw.reading import FileRejected, read_records, rel_path

FORMAT = "FinQA records (JSON objects with id, question, answer, program, table)"
_ID_RE = re.compile(r"(?P<ticker>[^/]+)/(?P<year>\d{4})/(?P<page>page_\d+)\.pdf-\d+")


def not_a_finqa_record(value: Any) -> str | None:
    """Why a decoded JSON value is not a FinQA record (None if it is one)."""
    if not isinstance(value, dict):
        return f"a {type(value).__name__}, not an object"
    keys = sorted(value)
    if "annotation" in value or any(k.startswith("qa_") for k in value):
        return f"it looks like ConvFinQA (conversation records with 'annotation' / 'qa_0'; keys {keys[:12]})"
    record = flatten(value)
    missing = [k for k in ("id", "question", "table") if k not in record]
    return f"missing {missing}; it has keys {keys[:12]}" if missing else None


def flatten(record: dict) -> dict:
    """The original FinQA layout keeps the question fields in ``qa``: lift them to the top level."""
    qa = record.get("qa")
    if isinstance(qa, dict):
        return {**{k: v for k, v in record.items() if k != "qa"}, **qa}
    return record


def load_finqa(files: list[Path], raw_root: Path, col: Collector, progress: Progress) -> None:
    state = _State()
    for path in files:
        rel = rel_path(path, raw_root)
        if progress:
            progress(f"finqa: reading {rel}")
        try:
            records = read_records(path, FORMAT, not_a_finqa_record)
        except FileRejected as e:
            col.records += 1
            col.reject(rel, rel, e.reason, e.detail)
            continue
        for i, record in enumerate(records, 1):
            col.records += 1
            if progress and col.records % PROGRESS_EVERY == 0:
                progress(f"finqa: {col.records} records ({rel} {record.key})")
            if record.problem:
                col.reject(rel, record.key, *record.problem)
                continue
            if _load_record(flatten(record.value), record.key, rel, col, state):
                col.records_loaded += 1
    if progress:
        progress(f"finqa: {col.records} records read from {len(files)} file(s)")


class _State:
    def __init__(self) -> None:
        self.seen_ids: set[str] = set()
        self.loaded_tables: set[tuple[str, str]] = set()
        self.rejected_tables: set[tuple[str, str]] = set()


def _load_record(r: dict, where: str, rel: str, col: Collector, state: _State) -> bool:
    rid = r.get("id")
    if not isinstance(rid, str) or not rid.strip():
        col.reject(rel, where, "bad_format", f"{where}: missing or non-string 'id'")
        return False
    m = _ID_RE.fullmatch(rid)
    if not m:
        col.reject(rel, rid, "bad_format", f"id {rid[:200]!r} is not '<TICKER>/<year>/page_<n>.pdf-<k>'")
        return False
    table = r.get("table")
    if not is_table(table):
        col.reject(rel, rid, "bad_format", "'table' must be a list of rows of text cells")
        return False
    for fld in ("question", "program"):
        if r.get(fld) is not None and not isinstance(r.get(fld), str):
            col.reject(rel, rid, "bad_format", f"'{fld}' must be a string, got {type(r.get(fld)).__name__}")
            return False
    if not is_scalar(r.get("answer")) or not is_scalar(r.get("exe_ans")):
        col.reject(rel, rid, "bad_format", "'answer' / 'exe_ans' must be scalars")
        return False
    if rid in state.seen_ids:
        col.reject(rel, rid, "duplicate_id", f"id {rid!r} already seen in this source ({where})")
        return False
    state.seen_ids.add(rid)

    ticker, year, page = m.group("ticker"), int(m.group("year")), m.group("page")
    report_id = f"{ticker}/{year}"
    tkey = (report_id, page)
    table_ori = r.get("table_ori")
    oversized = oversized_cell(table) or (oversized_cell(table_ori) if is_table(table_ori) else None) \
        or oversized_text("question", r.get("question"), MAX_QUESTION_CHARS)
    if oversized:
        col.reject(rel, rid, "oversized_field", f"{rid}: {oversized}")
        return False
    empty = table_emptiness(table, header_rows=1)
    if empty:
        if tkey not in state.rejected_tables and tkey not in state.loaded_tables:
            state.rejected_tables.add(tkey)
            col.reject(rel, f"{report_id}/{page}", "empty_table", f"table {report_id}/{page}: {empty}")
        col.reject(rel, rid, "empty_table", f"question's table {report_id}/{page}: {empty}")
        return False

    question = r.get("question")
    if is_blank(question):
        col.reject(rel, rid, "missing_question", "question is empty or absent")
        return False
    answer, exe_ans = r.get("answer"), r.get("exe_ans")
    if is_blank(answer) and is_blank(exe_ans):
        col.reject(rel, rid, "missing_answer", "both 'answer' and 'exe_ans' are empty or absent")
        return False
    text = r.get("program")
    try:
        program = programs.parse_finqa_program(text)
    except programs.ProgramError as e:
        col.reject(rel, rid, "unparsable_program", f"program {text!r}: {e}")
        return False

    if tkey not in state.loaded_tables:
        state.loaded_tables.add(tkey)
        same_shape = is_table(table_ori) and len(table_ori) == len(table) and all(
            len(x) == len(y) for x, y in zip(table, table_ori))
        n_cols = max((len(row) for row in table), default=0)
        col.add("finqa_tables", (report_id, page, len(table), n_cols, rel))
        for ri, row in enumerate(table):
            for ci, cell in enumerate(row):
                col.add("finqa_cells", (report_id, page, ri, ci, cell_text(cell),
                                        cell_text(table_ori[ri][ci]) if same_shape else None))

    answer_number = _one_number(answer)
    gold = r.get("gold_inds")
    col.add("finqa_questions", (
        rid, report_id, ticker, year, page,
        cell_text(r.get("split")), question, cell_text(answer),
        answer_number.bare if answer_number else None, answer_number.is_percent if answer_number else None,
        _exe_number(exe_ans), cell_text(exe_ans),
        text, json_dumps(program.as_json()), program.evaluate(), ",".join(program.ops),
        numbers_json(program.numbers()), program.result_kind(),
        json_dumps(gold) if gold is not None else None, rel,
    ))
    return True


def numbers_json(numbers: list[programs.Number]) -> str:
    """A program's number literals for the curation SQL: text, magnitude, position, whether a FinQA constant."""
    return json_dumps([{"text": n.text, "magnitude": n.magnitude, "position": n.position, "constant": n.is_constant}
                       for n in numbers])


def _one_number(value: Any):
    """The number an answer states, when it states exactly one (rl_assets.numbers)."""
    if isinstance(value, bool) or value is None:
        return None
    numbers = parse_answer(value if isinstance(value, str) else repr(value))
    return numbers[0] if len(numbers) == 1 else None


def _exe_number(exe_ans: Any) -> float | None:
    if isinstance(exe_ans, bool) or exe_ans is None:
        return None
    if isinstance(exe_ans, (int, float)):
        return float(exe_ans) if math.isfinite(exe_ans) else None
    parsed = _one_number(exe_ans)
    return parsed.value if parsed is not None else None
