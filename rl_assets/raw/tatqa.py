"""TAT-QA documents: ``tatqa/*.json`` (a JSON list of documents) and ``tatqa/*.jsonl`` (one per line).

A document is ``{"table": {"uid", "table": [[...], ...]}, "paragraphs": [...], "questions": [...]}``.
The document (its table and paragraphs) and each of its questions are separate records: a problem in
one question rejects that question; a problem in the table rejects the table and its questions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rl_assets import programs
from rl_assets.numbers import parse_answer
from rl_assets.raw.common import (
    MAX_QUESTION_CHARS, Collector, Progress, cell_text, is_blank, is_scalar, is_table, json_dumps,
    oversized_cell, oversized_text, table_emptiness,
)
from rl_assets.raw.finqa import numbers_json
from rl_assets.raw.reading import FileRejected, read_records, record_problem, rel_path

FORMAT = "TAT-QA documents (JSON objects with table, paragraphs, questions)"


def not_a_tatqa_document(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"a {type(value).__name__}, not an object"
    if not isinstance(value.get("table"), dict) or "questions" not in value:
        return f"no 'table' object or 'questions' list; it has keys {sorted(value)[:12]}"
    return None


def _document_problem(doc: Any, key: str) -> tuple[str, str] | None:
    """Problems of the document itself (its questions are checked one by one)."""
    if not isinstance(doc, dict):
        return None
    return record_problem({k: v for k, v in doc.items() if k != "questions"}, where=key)


def load_tatqa(files: list[Path], raw_root: Path, col: Collector, progress: Progress) -> None:
    seen_tables: set[str] = set()
    seen_questions: set[str] = set()
    for path in files:
        rel = rel_path(path, raw_root)
        if progress:
            progress(f"tatqa: reading {rel}")
        try:
            records = read_records(path, FORMAT, not_a_tatqa_document, _document_problem)
        except FileRejected as e:
            col.records += 1
            col.reject(rel, rel, e.reason, e.detail)
            continue
        for di, record in enumerate(records, 1):
            if record.problem:
                col.records += 1
                col.reject(rel, record.key, *record.problem)
                continue
            _load_document(record.value, record.key, rel, col, seen_tables, seen_questions)
            if progress and di % 50 == 0:
                progress(f"tatqa: {di}/{len(records)} documents, {col.records} questions ({rel})")
    if progress:
        progress(f"tatqa: {col.records} questions read from {len(files)} file(s)")


def _load_document(doc: dict, doc_key: str, rel: str, col: Collector, seen_tables: set[str],
                   seen_questions: set[str]) -> None:
    questions = doc.get("questions")
    if questions is None:
        questions = []
    tbl = doc.get("table")
    doc_uid = tbl.get("uid") if isinstance(tbl, dict) else None
    table_reason: str | None = None
    table_detail = ""
    if not isinstance(tbl, dict) or not isinstance(doc_uid, str) or not doc_uid.strip():
        table_reason, table_detail = "bad_format", f"{doc_key}: 'table' must be an object with a string 'uid'"
    elif not is_table(tbl.get("table")):
        table_reason, table_detail = "bad_format", f"table {doc_uid}: 'table.table' must be a list of rows of text cells"
    elif not isinstance(questions, list) or not isinstance(doc.get("paragraphs", []), list):
        table_reason, table_detail = "bad_format", f"document {doc_uid}: 'questions' / 'paragraphs' must be lists"
        questions = questions if isinstance(questions, list) else []
    elif doc_uid in seen_tables:
        table_reason, table_detail = "duplicate_id", f"table uid {doc_uid} already seen in this source"
    elif oversized_cell(tbl["table"]):
        table_reason, table_detail = "oversized_field", f"table {doc_uid}: {oversized_cell(tbl['table'])}"
    else:
        empty = table_emptiness(tbl["table"], header_rows=1)
        if empty:
            table_reason, table_detail = "empty_table", f"table {doc_uid}: {empty}"
    if isinstance(doc_uid, str) and doc_uid.strip():
        seen_tables.add(doc_uid)
    table_key = doc_uid if isinstance(doc_uid, str) and doc_uid.strip() else doc_key

    if table_reason:
        paragraphs = doc.get("paragraphs") if isinstance(doc.get("paragraphs"), list) else []
        col.reject(rel, table_key, table_reason, f"{table_detail} (document with {len(paragraphs)} paragraph(s) not loaded)")
    else:
        rows = tbl["table"]
        col.add("tatqa_tables", (doc_uid, len(rows), max((len(r) for r in rows), default=0), rel))
        for ri, row in enumerate(rows):
            for ci, cell in enumerate(row):
                col.add("tatqa_cells", (doc_uid, ri, ci, cell_text(cell)))
        for pi, p in enumerate(doc.get("paragraphs") or [], 1):
            if not isinstance(p, dict) or not (p.get("text") is None or isinstance(p.get("text"), str)):
                col.reject(rel, f"{doc_uid} paragraph {pi}", "bad_format", "paragraph must be an object with string 'text'")
                continue
            order = p.get("order")
            col.add("tatqa_paragraphs", (doc_uid, order if isinstance(order, int) and not isinstance(order, bool) else pi,
                                         p.get("text")))

    for qi, q in enumerate(questions, 1):
        col.records += 1
        if _load_question(q, qi, doc_uid, table_key, table_reason, rel, col, seen_questions):
            col.records_loaded += 1


def _load_question(q: Any, qi: int, doc_uid: str | None, table_key: str, table_reason: str | None,
                   rel: str, col: Collector, seen: set[str]) -> bool:
    if not isinstance(q, dict) or not isinstance(q.get("uid"), str) or not q["uid"].strip():
        col.reject(rel, f"{table_key} question {qi}", "bad_format", "question must be an object with a string 'uid'")
        return False
    uid = q["uid"]
    problem = record_problem(q, where=f"question {uid}") or (
        ("oversized_field", f"question {uid}: {oversized_text('question', q.get('question'), MAX_QUESTION_CHARS)}")
        if oversized_text("question", q.get("question"), MAX_QUESTION_CHARS) else None)
    if problem:
        col.reject(rel, uid, *problem)
        return False
    for fld in ("question", "derivation", "answer_type", "answer_from", "scale"):
        if q.get(fld) is not None and not isinstance(q.get(fld), str):
            col.reject(rel, uid, "bad_format", f"'{fld}' must be a string, got {type(q.get(fld)).__name__}")
            return False
    answer = q.get("answer")
    if not (is_scalar(answer) or (isinstance(answer, list) and all(is_scalar(a) for a in answer))):
        col.reject(rel, uid, "bad_format", "'answer' must be text, a number or a list of those")
        return False
    if uid in seen:
        col.reject(rel, uid, "duplicate_id", f"question uid {uid} already seen in this source")
        return False
    seen.add(uid)
    if table_reason:
        col.reject(rel, uid, table_reason, f"its table {table_key} was rejected ({table_reason})")
        return False
    if is_blank(q.get("question")):
        col.reject(rel, uid, "missing_question", "question is empty or absent")
        return False
    if is_blank(answer) or (isinstance(answer, list) and all(is_blank(a) for a in answer)):
        col.reject(rel, uid, "missing_answer", "answer is empty or absent")
        return False
    derivation = q.get("derivation")
    value = numbers = None
    if q.get("answer_type") == "arithmetic":
        try:
            parsed = programs.parse_derivation(derivation, q.get("scale"))
            value = parsed.evaluate()
        except programs.ProgramError as e:
            col.reject(rel, uid, "unparsable_program", f"derivation {derivation!r}: {e}")
            return False
        numbers = numbers_json(parsed.numbers())
    if isinstance(answer, list):
        answer_text = "; ".join("" if a is None else cell_text(a) for a in answer)
    else:
        answer_text = cell_text(answer)
    order = q.get("order")
    rel_par = q.get("rel_paragraphs")
    col.add("tatqa_questions", (
        uid, doc_uid, order if isinstance(order, int) and not isinstance(order, bool) else qi,
        q.get("question"), json_dumps(answer), answer_text, _answer_number(answer),
        q.get("answer_type"), q.get("answer_from"), derivation, value, numbers, q.get("scale"),
        json_dumps(rel_par) if rel_par is not None else None, rel,
    ))
    return True


def _answer_number(answer: Any) -> float | None:
    """The answer's number when it is exactly one number (rl_assets.numbers), as written (no scale applied)."""
    if isinstance(answer, list):
        return _answer_number(answer[0]) if len(answer) == 1 else None
    if isinstance(answer, bool) or answer is None:
        return None
    numbers = parse_answer(answer if isinstance(answer, str) else repr(answer))
    return numbers[0].bare if len(numbers) == 1 else None

