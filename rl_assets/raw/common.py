"""What every raw loader shares: the raw tables' schemas, rejection reasons, size limits, the row
collector and small cell helpers."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import pyarrow as pa

SOURCES = ("sec10k", "finqa", "tatqa")
SOURCE_DIRS = {"sec10k": "sec10k_tables", "finqa": "finqa", "tatqa": "tatqa"}

# Reasons used in raw.rejected_records.reason
REJECT_REASONS = {
    "wrong_format": "a whole file that is not in the source's format (named once, with what was expected)",
    "bad_json": "a file or line that is not parseable JSON",
    "bad_encoding": "a record (line, document, table file) containing bytes that are not UTF-8",
    "duplicate_key": "a JSON object with the same key twice (the record is ambiguous)",
    "oversized_field": "a cell, column name, question or text over the size limits below",
    "bad_format": "JSON, but the wrong shape or types",
    "empty_table": "a table with no data rows, no value columns or only blank value cells "
                   "(for FinQA / TAT-QA each question over such a table is rejected too)",
    "missing_question": "question text absent or blank",
    "missing_answer": "answer absent or blank (FinQA: and exe_ans absent too)",
    "unparsable_program": "a FinQA program / TAT-QA arithmetic derivation that does not parse or cannot be evaluated",
    "duplicate_id": "a record whose id was already seen in this source (the first one is kept)",
}

# Size limits (characters). Real data stays far below them (longest 10-K cell 205, question 275,
# table description 983, TAT-QA paragraph 2,246); a record over a limit is quarantined with its file and key.
MAX_CELL_CHARS = 500  # a table cell, row label or column name
MAX_QUESTION_CHARS = 600  # a question (also the upper bound of the tasks' question-length expectation)
MAX_TEXT_CHARS = 20_000  # a description, paragraph, answer or program; any other string of a record

# A source fails its blocking check when more than this share of its records is rejected
# (or when it has input files but loads no record).
MAX_REJECTED_SHARE = 0.5

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
    records: int = 0  # primary records seen: 10-K table files, FinQA / TAT-QA questions (+1 per rejected file)
    records_loaded: int = 0  # of those, loaded
    ignored_files: list[str] = field(default_factory=list)  # files in the source folder that no rule reads

    @property
    def rejected_share(self) -> float:
        return 1.0 - self.records_loaded / self.records if self.records else 0.0

    def failure(self) -> str | None:
        """Why this source fails its blocking check (None when it passes)."""
        if self.records and self.records_loaded == 0:
            return (f"source {self.source}: no record loaded from {len(self.files)} file(s); "
                    f"rejected {self.rejected_by_reason}")
        if self.rejected_share > MAX_REJECTED_SHARE:
            return (f"source {self.source}: {self.records - self.records_loaded} of {self.records} records rejected "
                    f"({self.rejected_share:.0%} > {MAX_REJECTED_SHARE:.0%}): {self.rejected_by_reason}")
        return None


# --------------------------------------------------------------------------------------
# Table schemas (explicit types so that empty sources still create well-typed tables)
# --------------------------------------------------------------------------------------

V, I, D, B = "VARCHAR", "INTEGER", "DOUBLE", "BOOLEAN"
ARROW_TYPES = {V: pa.string(), I: pa.int32(), D: pa.float64(), B: pa.bool_()}

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
            ("original_split", V), ("question", V), ("answer", V), ("answer_value", D), ("answer_is_percent", B),
            ("exe_ans", D), ("exe_ans_text", V), ("program", V), ("program_steps", V), ("program_value", D),
            ("program_ops", V), ("program_numbers", V), ("program_result_kind", V), ("gold_inds", V),
            ("source_file", V),
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
            ("answer_from", V), ("derivation", V), ("derivation_value", D), ("program_numbers", V),
            ("scale", V), ("rel_paragraphs", V), ("source_file", V),
        ],
    },
}


class Collector:
    """Row buffers for the tables of one source, its rejects and its record counts."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.rows: dict[str, list[tuple]] = {t: [] for t in TABLE_SCHEMAS[source]}
        self.rejects: list[tuple] = []
        self.records = 0
        self.records_loaded = 0

    def add(self, table: str, row: tuple) -> None:
        self.rows[table].append(row)

    def reject(self, source_file: str, record_key: str | None, reason: str, detail: str) -> None:
        assert reason in REJECT_REASONS, reason
        self.rejects.append((self.source, source_file, record_key, reason, detail[:500]))

    def rejected_by_reason(self) -> dict[str, int]:
        return dict(sorted(Counter(r[3] for r in self.rejects).items()))


# --------------------------------------------------------------------------------------
# Cell helpers
# --------------------------------------------------------------------------------------


def is_blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v.strip() == "")


def cell_text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def is_table(t: Any) -> bool:
    """A list of rows of scalar cells."""
    return isinstance(t, list) and all(isinstance(r, list) and all(is_scalar(c) for c in r) for r in t)


def table_emptiness(rows: list[list[Any]], header_rows: int) -> str | None:
    """Reason text when a table (list of rows) has no data, else None.

    ``header_rows`` leading rows are headers; column 0 is the row label.
    """
    n_cols = max((len(r) for r in rows), default=0)
    data = rows[header_rows:]
    if not data:
        return f"no data rows ({len(rows)} row(s) in total)"
    if n_cols < 2:
        return f"no value columns ({n_cols} column(s))"
    if all(is_blank(c) for r in data for c in r[1:]):
        return "all value cells are blank"
    return None


def oversized_cell(rows: list[list[Any]]) -> str | None:
    """Where a table has a cell longer than MAX_CELL_CHARS (row, column, length), else None."""
    for ri, row in enumerate(rows):
        for ci, cell in enumerate(row):
            text = cell_text(cell)
            if text is not None and len(text) > MAX_CELL_CHARS:
                return f"cell (row {ri}, column {ci}) has {len(text):,} characters (limit {MAX_CELL_CHARS})"
    return None


def oversized_text(name: str, value: Any, limit: int) -> str | None:
    if isinstance(value, str) and len(value) > limit:
        return f"'{name}' has {len(value):,} characters (limit {limit:,})"
    return None


def json_dumps(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False)


def fmt_exc(e: Exception) -> str:
    return f"{type(e).__name__}: {e}"
