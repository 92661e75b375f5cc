"""Tests for rl_assets.raw: loading the raw sources into DuckDB schema ``raw``.

Each test works on copies of REAL files from data/raw (a subset, for speed) in a tmp raw
root, corrupts some of them, and uses its own DuckDB file.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from rl_assets import raw as rs

REPO = Path(__file__).resolve().parents[1]
REAL_RAW = REPO / "data" / "raw"
SEC10K_COMPANIES = ("amazon", "apple")
N_FINQA_LINES = 50
N_TATQA_DOCS = 20

pytestmark = pytest.mark.skipif(not REAL_RAW.is_dir(), reason="data/raw not present")


# ----------------------------------------------------------------------------- helpers


def _real_finqa_lines() -> list[str]:
    return (REAL_RAW / "finqa" / "finqa_examples.jsonl").read_text(encoding="utf-8").splitlines()


def _real_tatqa_docs() -> list[dict]:
    return json.loads((REAL_RAW / "tatqa" / "tatqa_dataset_dev.json").read_text(encoding="utf-8"))


def _make_raw_root(root: Path) -> Path:
    """A pristine subset copy of the real raw data."""
    sec = root / "sec10k_tables"
    sec.mkdir(parents=True)
    shutil.copy(REAL_RAW / "sec10k_tables" / "tables_cleaned_all_companies.json", sec)
    for company in SEC10K_COMPANIES:
        shutil.copytree(REAL_RAW / "sec10k_tables" / company, sec / company)
        for p in (sec / company).iterdir():
            p.chmod(0o644)
    (root / "finqa").mkdir()
    (root / "finqa" / "finqa_examples.jsonl").write_text(
        "\n".join(_real_finqa_lines()[:N_FINQA_LINES]) + "\n", encoding="utf-8")
    (root / "tatqa").mkdir()
    (root / "tatqa" / "tatqa_dataset_dev.json").write_text(
        json.dumps(_real_tatqa_docs()[:N_TATQA_DOCS]), encoding="utf-8")
    for p in root.rglob("*.json"):
        p.chmod(0o644)
    return root


def _count(con, table: str, where: str = "", params: list | None = None) -> int:
    return con.execute(f"SELECT count(*) FROM raw.{table} {where}", params or []).fetchone()[0]


def _rejects(con, source: str) -> set[tuple[str, str, str]]:
    return set(con.execute(
        "SELECT source_file, record_key, reason FROM raw.rejected_records WHERE source = ?", [source]).fetchall())


def _sec10k_valid_stats(raw_root: Path) -> tuple[int, int, set[str]]:
    """(valid tables, their cells, keys of invalid files) computed independently of the loader."""
    n_tables = n_cells = 0
    bad: set[str] = set()
    for p in rs.source_files("sec10k", raw_root):
        key = f"{p.parent.name}/{p.stem}"
        try:
            t = json.loads(p.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            bad.add(key)
            continue
        if not isinstance(t, dict):
            bad.add(key)
            continue
        values = [v for col in list(t.values())[1:] for v in col.values()]
        if len(t) < 2 or not values or all(v is None or str(v).strip() == "" for v in values):
            bad.add(key)
            continue
        n_tables += 1
        n_cells += sum(len(col) for col in t.values())
    return n_tables, n_cells, bad


@pytest.fixture
def raw_root(tmp_path: Path) -> Path:
    return _make_raw_root(tmp_path / "raw")


@pytest.fixture
def con(tmp_path: Path):
    c = duckdb.connect(str(tmp_path / "test.duckdb"))
    yield c
    c.close()


# ----------------------------------------------------------------------------- sec10k


def test_sec10k_corruptions_rejected(raw_root: Path, con) -> None:
    sec = raw_root / "sec10k_tables"
    pristine_empty = {f"{p.parent.name}/{p.stem}" for p in rs.source_files("sec10k", raw_root)
                      if p.read_text().strip() == "{}"}  # the real data has `{}` tables
    (sec / "amazon" / "zz_bad_json.json").write_text('{"metric": {"0": "revenue"}, "2024": {"0": "$1', encoding="utf-8")
    (sec / "apple" / "zz_empty.json").write_text("{}", encoding="utf-8")
    (sec / "apple" / "zz_blank.json").write_text(
        json.dumps({"metric": {"0": "", "1": " "}, "2024": {"0": "", "1": None}, "2023": {"0": "  ", "1": ""}}),
        encoding="utf-8")
    (sec / "apple" / "zz_bad_format.json").write_text(json.dumps([["metric", "2024"], ["revenue", "1"]]))

    res = rs.load_source(con, "sec10k", raw_root)

    expected = {(f"sec10k_tables/{k}.json", k, "empty_table") for k in pristine_empty} | {
        ("sec10k_tables/amazon/zz_bad_json.json", "amazon/zz_bad_json", "bad_json"),
        ("sec10k_tables/apple/zz_empty.json", "apple/zz_empty", "empty_table"),
        ("sec10k_tables/apple/zz_blank.json", "apple/zz_blank", "empty_table"),
        ("sec10k_tables/apple/zz_bad_format.json", "apple/zz_bad_format", "bad_format"),
    }
    assert _rejects(con, "sec10k") == expected
    assert res.rejected == len(expected)
    assert res.rejected_by_reason == {"bad_format": 1, "bad_json": 1, "empty_table": len(pristine_empty) + 2}

    n_files = len(rs.source_files("sec10k", raw_root))
    n_tables, n_cells, _ = _sec10k_valid_stats(raw_root)
    assert n_tables == n_files - len(expected)  # counts = input minus rejects
    assert res.counts == {"sec10k_tables": n_tables, "sec10k_cells": n_cells}
    assert _count(con, "sec10k_tables") == n_tables
    assert _count(con, "sec10k_cells") == n_cells
    assert set(res.files) == {rs.rel_path(p, raw_root) for p in rs.source_files("sec10k", raw_root)} | {
        "sec10k_tables/tables_cleaned_all_companies.json"}


def test_sec10k_cells_and_descriptions(raw_root: Path, con) -> None:
    rs.load_source(con, "sec10k", raw_root)
    path = raw_root / "sec10k_tables" / "apple"
    src = next(p for p in sorted(path.iterdir()) if len(json.loads(p.read_text())) >= 3)
    data = json.loads(src.read_text())
    columns = list(data)
    rows = con.execute(
        "SELECT row_index, column_index, column_name, cell_text FROM raw.sec10k_cells "
        "WHERE company = 'apple' AND table_name = ? ORDER BY column_index, row_index", [src.stem]).fetchall()
    expected = [(int(r), ci, c, None if v is None else str(v))
                for ci, c in enumerate(columns) for r, v in sorted(data[c].items(), key=lambda kv: int(kv[0]))]
    assert rows == expected
    desc = json.loads((raw_root / "sec10k_tables" / "tables_cleaned_all_companies.json").read_text())
    n_rows, n_cols, description, source_file = con.execute(
        "SELECT n_rows, n_cols, description, source_file FROM raw.sec10k_tables "
        "WHERE company = 'apple' AND table_name = ?", [src.stem]).fetchone()
    assert (n_rows, n_cols) == (len(data[columns[0]]), len(columns))
    assert description == (desc[f"apple/{src.stem}"]["description"] or None)
    assert source_file == f"sec10k_tables/apple/{src.name}"
    types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_schema = 'raw' AND table_name = 'sec10k_cells'").fetchall())
    assert types["row_index"] == "INTEGER" and types["cell_text"] == "VARCHAR"


# ----------------------------------------------------------------------------- finqa


def test_finqa_corruptions_rejected(raw_root: Path, con) -> None:
    lines = _real_finqa_lines()[:N_FINQA_LINES]
    recs = [json.loads(line) for line in lines]
    out = list(lines)
    out[3] = lines[3][: len(lines[3]) // 2]  # truncated JSON line -> line 4
    no_answer = dict(recs[5])
    no_answer.pop("answer")
    no_answer.pop("exe_ans")
    out[5] = json.dumps(no_answer)
    bad_prog = dict(recs[7], program="subtract(40678, 2526")
    out[7] = json.dumps(bad_prog)
    out.insert(10, "this is { not json at all")  # garbage -> line 11
    out.append(lines[0])  # duplicated line
    (raw_root / "finqa" / "finqa_examples.jsonl").write_text("\n".join(out) + "\n", encoding="utf-8")

    res = rs.load_source(con, "finqa", raw_root)

    f = "finqa/finqa_examples.jsonl"
    assert _rejects(con, "finqa") == {
        (f, "line 4", "bad_json"),
        (f, "line 11", "bad_json"),
        (f, recs[5]["id"], "missing_answer"),
        (f, recs[7]["id"], "unparsable_program"),
        (f, recs[0]["id"], "duplicate_id"),
    }
    assert res.rejected == 5
    assert res.rejected_by_reason == {"bad_json": 2, "duplicate_id": 1, "missing_answer": 1, "unparsable_program": 1}

    valid = [r for i, r in enumerate(recs) if i not in (3, 5, 7)]
    assert len(valid) == N_FINQA_LINES - 3  # = input records (52) minus rejects (5)
    assert res.counts["finqa_questions"] == len(valid) == _count(con, "finqa_questions")
    assert {r[0] for r in con.execute("SELECT id FROM raw.finqa_questions").fetchall()} == {r["id"] for r in valid}
    pages = {}
    for r in valid:
        key = (r["id"].split("/page_")[0], "page_" + r["id"].split("/page_")[1].split(".pdf")[0])
        pages.setdefault(key, r["table"])
    assert res.counts["finqa_tables"] == len(pages) == _count(con, "finqa_tables")
    assert res.counts["finqa_cells"] == sum(len(row) for t in pages.values() for row in t) == _count(con, "finqa_cells")
    # the duplicated record is kept once
    assert _count(con, "finqa_questions", "WHERE id = ?", [recs[0]["id"]]) == 1


def test_finqa_question_columns(raw_root: Path, con) -> None:
    rs.load_source(con, "finqa", raw_root)
    rec = json.loads(_real_finqa_lines()[0])
    row = con.execute(
        "SELECT report_id, ticker, year, page, original_split, question, answer, exe_ans, exe_ans_text, "
        "program, program_steps, program_value, program_ops, gold_inds FROM raw.finqa_questions WHERE id = ?",
        [rec["id"]]).fetchone()
    ticker, year = rec["id"].split("/")[:2]
    assert row[:7] == (f"{ticker}/{year}", ticker, int(year), "page_" + rec["id"].split("page_")[1].split(".")[0],
                       rec["split"], rec["question"], rec["answer"])
    assert row[7] == pytest.approx(rec["exe_ans"])
    assert json.loads(row[10])[0]["op"] == rec["program"].split("(")[0]
    assert row[11] == pytest.approx(rec["exe_ans"], rel=1e-3)
    assert json.loads(row[13]) == rec["gold_inds"]
    # cells: normalised text with the original alongside; row 0 is the header
    cells = con.execute("SELECT row_index, column_index, cell_text, cell_text_original FROM raw.finqa_cells "
                        "WHERE report_id = ? AND page = ? ORDER BY 1, 2", [row[0], row[3]]).fetchall()
    assert [c[2] for c in cells] == [c for r in rec["table"] for c in r]
    assert [c[3] for c in cells] == [c for r in rec["table_ori"] for c in r]


# ----------------------------------------------------------------------------- tatqa


def test_tatqa_corruptions_rejected(raw_root: Path, con) -> None:
    docs = _real_tatqa_docs()[:N_TATQA_DOCS]
    orig = copy.deepcopy(docs)
    dup_uid = docs[0]["questions"][0]["uid"]
    docs[1]["questions"][1]["uid"] = dup_uid  # duplicated question uid
    docs[2]["table"]["table"] = []  # table with no rows
    arith_doc, arith_q = next((d, q) for d in docs[3:] for q in d["questions"] if q["answer_type"] == "arithmetic")
    arith_q["derivation"] = "foo bar"
    (raw_root / "tatqa" / "tatqa_dataset_dev.json").write_text(json.dumps(docs), encoding="utf-8")

    res = rs.load_source(con, "tatqa", raw_root)

    f = "tatqa/tatqa_dataset_dev.json"
    empty_uid = docs[2]["table"]["uid"]
    expected = {(f, dup_uid, "duplicate_id"), (f, empty_uid, "empty_table"), (f, arith_q["uid"], "unparsable_program")}
    expected |= {(f, q["uid"], "empty_table") for q in docs[2]["questions"]}
    assert _rejects(con, "tatqa") == expected
    assert res.rejected == 3 + len(docs[2]["questions"])
    # the first question with the duplicated uid is the one kept
    assert con.execute("SELECT doc_uid, question FROM raw.tatqa_questions WHERE uid = ?", [dup_uid]).fetchall() == [
        (docs[0]["table"]["uid"], docs[0]["questions"][0]["question"])]

    n_q = sum(len(d["questions"]) for d in orig)
    assert res.counts == {
        "tatqa_tables": N_TATQA_DOCS - 1,
        "tatqa_cells": sum(len(r) for i, d in enumerate(orig) if i != 2 for r in d["table"]["table"]),
        "tatqa_paragraphs": sum(len(d["paragraphs"]) for i, d in enumerate(orig) if i != 2),
        "tatqa_questions": n_q - 2 - len(docs[2]["questions"]),  # input minus rejected questions
    }
    for table, n in res.counts.items():
        assert _count(con, table) == n
    assert _count(con, "tatqa_tables", "WHERE doc_uid = ?", [empty_uid]) == 0


def test_tatqa_question_columns(raw_root: Path, con) -> None:
    rs.load_source(con, "tatqa", raw_root)
    docs = _real_tatqa_docs()[:N_TATQA_DOCS]
    q = next(q for d in docs for q in d["questions"] if q["answer_type"] == "arithmetic")
    row = con.execute("SELECT answer_json, answer_text, answer_value, derivation, derivation_value, scale, "
                      "rel_paragraphs FROM raw.tatqa_questions WHERE uid = ?", [q["uid"]]).fetchone()
    assert json.loads(row[0]) == q["answer"]
    assert row[2] == pytest.approx(float(q["answer"]))
    assert row[3] == q["derivation"]
    v = row[4] * (100 if q["scale"] == "percent" and abs(row[4] * 100 - float(q["answer"])) < 0.1 else 1)
    assert v == pytest.approx(float(q["answer"]), abs=0.01)
    assert json.loads(row[6]) == q["rel_paragraphs"]
    multi = next(q for d in docs for q in d["questions"] if q["answer_type"] == "multi-span")
    text, value = con.execute("SELECT answer_text, answer_value FROM raw.tatqa_questions WHERE uid = ?",
                              [multi["uid"]]).fetchone()
    assert text == "; ".join(multi["answer"]) and value is None


# ----------------------------------------------------------------------------- all sources


def test_new_files_are_picked_up_and_change_hash(raw_root: Path, con) -> None:
    before = {s: rs.load_source(con, s, raw_root) for s in rs.SOURCES}
    # FinQA: a second jsonl file with two more real records
    extra = _real_finqa_lines()[N_FINQA_LINES:N_FINQA_LINES + 2]
    (raw_root / "finqa" / "more.jsonl").write_text("\n".join(extra) + "\n", encoding="utf-8")
    # TAT-QA: a second file with three more real documents
    more_docs = _real_tatqa_docs()[N_TATQA_DOCS:N_TATQA_DOCS + 3]
    (raw_root / "tatqa" / "more.json").write_text(json.dumps(more_docs), encoding="utf-8")
    # sec10k: a new company folder
    shutil.copytree(REAL_RAW / "sec10k_tables" / "gs", raw_root / "sec10k_tables" / "gs")

    after = {s: rs.load_source(con, s, raw_root) for s in rs.SOURCES}
    for s in rs.SOURCES:
        assert after[s].content_hash != before[s].content_hash
        assert after[s].content_hash == rs.content_hash(s, raw_root)
    assert "finqa/more.jsonl" in after["finqa"].files and "tatqa/more.json" in after["tatqa"].files
    assert after["finqa"].counts["finqa_questions"] == before["finqa"].counts["finqa_questions"] + 2
    assert after["tatqa"].counts["tatqa_tables"] == before["tatqa"].counts["tatqa_tables"] + 3
    assert after["tatqa"].counts["tatqa_questions"] == before["tatqa"].counts["tatqa_questions"] + sum(
        len(d["questions"]) for d in more_docs)
    assert _count(con, "sec10k_tables", "WHERE company = 'gs'") > 0
    assert _count(con, "finqa_questions", "WHERE source_file = 'finqa/more.jsonl'") == 2
    # a changed description file changes the sec10k hash too
    h = rs.content_hash("sec10k", raw_root)
    (raw_root / "sec10k_tables" / "extra_descriptions.json").write_text(json.dumps({}))
    assert rs.content_hash("sec10k", raw_root) != h


def _expected_hash(raw_root: Path, rel_paths: list[str]) -> str:
    """The documented content hash, computed here from scratch: SHA-256 over the files sorted by relative
    path, each as (8-byte big-endian length, path bytes, 8-byte length, file bytes)."""
    import hashlib

    h = hashlib.sha256()
    for rel in sorted(rel_paths):
        data = (raw_root / rel).read_bytes()
        h.update(len(rel.encode()).to_bytes(8, "big") + rel.encode() + len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


def test_content_hash_is_the_documented_hash_of_the_source_files(raw_root: Path, tmp_path: Path) -> None:
    expected = {
        "sec10k": _expected_hash(raw_root, [p.relative_to(raw_root).as_posix() for p in raw_root.glob("sec10k_tables/**/*.json")]),
        "finqa": _expected_hash(raw_root, ["finqa/finqa_examples.jsonl"]),
        "tatqa": _expected_hash(raw_root, ["tatqa/tatqa_dataset_dev.json"]),
    }
    assert {s: rs.content_hash(s, raw_root) for s in rs.SOURCES} == expected
    moved = tmp_path / "elsewhere" / "raw"
    shutil.copytree(raw_root, moved)
    assert {s: rs.content_hash(s, moved) for s in rs.SOURCES} == expected  # relative paths only
    c = duckdb.connect(str(tmp_path / "a.duckdb"))
    try:
        assert {s: rs.load_source(c, s, raw_root).content_hash for s in rs.SOURCES} == expected
    finally:
        c.close()
    # one byte more, a renamed file, a file the source does not read
    (raw_root / "finqa" / "finqa_examples.jsonl").open("a").write(" ")
    assert rs.content_hash("finqa", raw_root) != expected["finqa"]
    (raw_root / "tatqa" / "tatqa_dataset_dev.json").rename(raw_root / "tatqa" / "dev.json")
    assert rs.content_hash("tatqa", raw_root) != expected["tatqa"]
    (raw_root / "tatqa" / "notes.txt").write_text("not data")
    assert rs.content_hash("tatqa", raw_root) == _expected_hash(raw_root, ["tatqa/dev.json"])


def test_reload_is_idempotent_and_per_source(raw_root: Path, con) -> None:
    (raw_root / "finqa" / "finqa_examples.jsonl").open("a").write("garbage\n")
    msgs: list[str] = []
    first = {s: rs.load_source(con, s, raw_root, progress=msgs.append) for s in rs.SOURCES}
    assert msgs and any("finqa" in m for m in msgs)
    tables = [t for s in rs.SOURCES for t in rs.TABLE_SCHEMAS[s]] + ["rejected_records"]
    snapshot = {t: _count(con, t) for t in tables}
    assert snapshot["rejected_records"] == sum(r.rejected for r in first.values())

    again = rs.load_source(con, "finqa", raw_root)
    again2 = rs.load_source(con, "sec10k", raw_root)
    assert again.counts == first["finqa"].counts and again2.counts == first["sec10k"].counts
    assert {t: _count(con, t) for t in tables} == snapshot
    assert con.execute("SELECT count(*) - count(DISTINCT id) FROM raw.finqa_questions").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM (SELECT DISTINCT * FROM raw.rejected_records)").fetchone()[0] == \
        snapshot["rejected_records"]
    # re-loading one source leaves the other sources' rejects alone
    assert _count(con, "rejected_records", "WHERE source = 'sec10k'") == first["sec10k"].rejected > 0
    assert _count(con, "rejected_records", "WHERE source = 'finqa'") == first["finqa"].rejected == 1


def test_missing_source_creates_typed_empty_tables(tmp_path: Path, con) -> None:
    empty_root = tmp_path / "empty_raw"
    empty_root.mkdir()
    for s in rs.SOURCES:
        res = rs.load_source(con, s, empty_root)
        assert res.files == [] and res.rejected == 0 and set(res.counts.values()) == {0}
        assert res.content_hash == rs.content_hash(s, empty_root)
    types = dict(con.execute("SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
                             "WHERE table_schema = 'raw'").fetchall())
    assert types["finqa_questions.exe_ans"] == "DOUBLE"
    assert types["finqa_questions.year"] == "INTEGER"
    assert types["tatqa_questions.derivation_value"] == "DOUBLE"
    assert types["rejected_records.reason"] == "VARCHAR"
    for s in rs.SOURCES:
        for t, cols in rs.TABLE_SCHEMAS[s].items():
            assert [c for c, _ in cols] == [k.split(".", 1)[1] for k in types if k.startswith(t + ".")]


# ----------------------------------------------------------------------------- full real data


def test_full_real_data(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "full.duckdb"))
    try:
        res = {s: rs.load_source(con, s, REAL_RAW) for s in rs.SOURCES}
        # sec10k: 20 companies, 783 table files; 137 of them are `{}` in the real data
        assert len(rs.source_files("sec10k", REAL_RAW)) == 783
        assert con.execute("SELECT count(DISTINCT company) FROM raw.sec10k_tables").fetchone()[0] == 20
        assert res["sec10k"].counts["sec10k_tables"] + res["sec10k"].rejected == 783
        assert res["sec10k"].rejected_by_reason == {"empty_table": 137}
        assert res["sec10k"].counts["sec10k_tables"] == 646
        # finqa: 961 questions; AMT/2008 page_107's normalised table has a single row (its header is
        # merged into the cells), so that table and its 4 questions are rejected as empty_table
        assert res["finqa"].counts["finqa_questions"] == 957
        assert res["finqa"].rejected_by_reason == {"empty_table": 5}
        assert _rejects(con, "finqa") == {("finqa/finqa_examples.jsonl", k, "empty_table") for k in
                                          ["AMT/2008/page_107"] + [f"AMT/2008/page_107.pdf-{i}" for i in range(1, 5)]}
        assert res["finqa"].counts["finqa_questions"] + 4 == 961
        # tatqa: everything loads, every arithmetic derivation evaluates
        assert res["tatqa"].counts["tatqa_tables"] == 278
        assert res["tatqa"].counts["tatqa_questions"] == 1668
        assert res["tatqa"].rejected == 0
        assert con.execute("SELECT count(*) FROM raw.tatqa_questions WHERE answer_type = 'arithmetic' "
                           "AND derivation_value IS NULL").fetchone()[0] == 0
        assert _count(con, "rejected_records") == 137 + 5
    finally:
        con.close()


# ----------------------------------------------------------------------------- per-record quarantine


def test_a_bad_byte_rejects_only_its_line(raw_root: Path, con) -> None:
    lines = _real_finqa_lines()[:N_FINQA_LINES]
    data = [line.encode("utf-8") for line in lines]
    data[6] = data[6].replace(b'"question": "', b'"question": "\xff\xfe', 1)  # line 7: not UTF-8
    (raw_root / "finqa" / "finqa_examples.jsonl").write_bytes(b"\n".join(data) + b"\n")

    res = rs.load_source(con, "finqa", raw_root)

    assert _rejects(con, "finqa") == {("finqa/finqa_examples.jsonl", "line 7", "bad_encoding")}
    detail = con.execute("SELECT detail FROM raw.rejected_records WHERE record_key = 'line 7'").fetchone()[0]
    assert "0xff" in detail
    assert res.counts["finqa_questions"] == N_FINQA_LINES - 1
    assert (res.records, res.records_loaded) == (N_FINQA_LINES, N_FINQA_LINES - 1)
    assert res.failure() is None


def test_a_bad_byte_in_a_json_document_rejects_only_that_record(raw_root: Path, con) -> None:
    docs = _real_tatqa_docs()[:N_TATQA_DOCS]
    victim = docs[4]["questions"][0]
    text = json.dumps(docs).replace(json.dumps(victim["question"]), json.dumps(victim["question"])[:-1] + 'BADBYTE"', 1)
    (raw_root / "tatqa" / "tatqa_dataset_dev.json").write_bytes(text.encode("utf-8").replace(b"BADBYTE", b"\xc3\x28"))
    (raw_root / "sec10k_tables" / "apple" / "zz_latin1.json").write_bytes(
        '{"metric": {"0": "caf\u00e9 revenue"}, "2024": {"0": "$1"}}'.encode("latin-1"))

    res = rs.load_source(con, "tatqa", raw_root)
    sec = rs.load_source(con, "sec10k", raw_root)

    assert _rejects(con, "tatqa") == {("tatqa/tatqa_dataset_dev.json", victim["uid"], "bad_encoding")}
    assert res.counts["tatqa_questions"] == sum(len(d["questions"]) for d in docs) - 1
    assert res.counts["tatqa_tables"] == N_TATQA_DOCS  # the document itself is fine
    assert ("sec10k_tables/apple/zz_latin1.json", "apple/zz_latin1", "bad_encoding") in _rejects(con, "sec10k")
    assert sec.counts["sec10k_tables"] == _sec10k_valid_stats(raw_root)[0]


def test_duplicate_json_keys_are_quarantined(raw_root: Path, con) -> None:
    sec = raw_root / "sec10k_tables" / "apple"
    (sec / "zz_dup_column.json").write_text(
        '{"metric": {"0": "revenue"}, "2024": {"0": "$100"}, "2024": {"0": "$999"}}', encoding="utf-8")
    (sec / "zz_dup_row.json").write_text('{"metric": {"0": "a", "0": "b"}, "2024": {"0": "$1"}}', encoding="utf-8")
    docs = _real_tatqa_docs()[:N_TATQA_DOCS]
    victim = docs[2]["questions"][1]
    text = json.dumps(docs).replace(f'"uid": "{victim["uid"]}"', f'"uid": "{victim["uid"]}", "scale": "million"', 1)
    (raw_root / "tatqa" / "tatqa_dataset_dev.json").write_text(text, encoding="utf-8")

    rs.load_source(con, "sec10k", raw_root)
    rs.load_source(con, "tatqa", raw_root)

    rejects = _rejects(con, "sec10k")
    assert ("sec10k_tables/apple/zz_dup_column.json", "apple/zz_dup_column", "duplicate_key") in rejects
    assert ("sec10k_tables/apple/zz_dup_row.json", "apple/zz_dup_row", "duplicate_key") in rejects
    detail = con.execute("SELECT detail FROM raw.rejected_records WHERE record_key = 'apple/zz_dup_column'").fetchone()[0]
    assert "'2024'" in detail
    assert _count(con, "sec10k_cells", "WHERE cell_text IN ('$999', '$100')") == 0
    assert _rejects(con, "tatqa") == {("tatqa/tatqa_dataset_dev.json", victim["uid"], "duplicate_key")}


def test_oversized_cells_and_questions_are_quarantined_with_file_and_key(raw_root: Path, con) -> None:
    sec = raw_root / "sec10k_tables" / "apple"
    huge = "x" * 1_000_000
    (sec / "zz_huge_label.json").write_text(json.dumps({"metric": {"0": huge, "1": "b"}, "2024": {"0": "$1", "1": "$2"}}))
    lines = _real_finqa_lines()[:N_FINQA_LINES]
    rec = json.loads(lines[2])
    lines[2] = json.dumps(dict(rec, question="why? " * (rs.MAX_QUESTION_CHARS // 5 + 1)))
    (raw_root / "finqa" / "finqa_examples.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    rs.load_source(con, "sec10k", raw_root)
    finqa = rs.load_source(con, "finqa", raw_root)

    assert ("sec10k_tables/apple/zz_huge_label.json", "apple/zz_huge_label", "oversized_field") in _rejects(con, "sec10k")
    detail = con.execute("SELECT detail FROM raw.rejected_records WHERE record_key = 'apple/zz_huge_label'").fetchone()[0]
    assert "1,000,000 characters" in detail and len(detail) <= 500
    assert _rejects(con, "finqa") == {("finqa/finqa_examples.jsonl", rec["id"], "oversized_field")}
    assert finqa.counts["finqa_questions"] == N_FINQA_LINES - 1
    longest = con.execute("SELECT max(length(cell_text)) FROM raw.sec10k_cells").fetchone()[0]
    assert longest <= rs.MAX_CELL_CHARS


def _convfinqa_records(n: int) -> list[dict]:
    """Records in ConvFinQA's layout (a FinQA record plus a conversation 'annotation' and qa_0 / qa_1)."""
    out = []
    for line in _real_finqa_lines()[:n]:
        r = json.loads(line)
        qa = {k: r[k] for k in ("question", "answer", "program", "exe_ans")}
        out.append({"id": "Single_" + r["id"], "pre_text": r["pre_text"], "post_text": r["post_text"],
                    "table": r["table"], "table_ori": r["table_ori"], "qa_0": qa, "qa_1": qa,
                    "annotation": {"dialogue_break": [r["question"]], "turn_program": [r["program"]]}})
    return out


def test_a_file_in_another_format_gets_one_clear_rejection(raw_root: Path, con) -> None:
    # ConvFinQA (a pretty-printed JSON list) renamed to .jsonl, and the same as .json
    pretty = json.dumps(_convfinqa_records(30), indent=2)
    assert pretty.count("\n") > 1000
    (raw_root / "finqa" / "convfinqa_train.jsonl").write_text(pretty, encoding="utf-8")
    (raw_root / "finqa" / "convfinqa_dev.json").write_text(pretty, encoding="utf-8")
    # JSON lines named .json, and a TAT-QA file that is a FinQA file
    (raw_root / "tatqa" / "lines.json").write_text("\n".join(json.dumps(d) for d in _real_tatqa_docs()[:3]), encoding="utf-8")
    (raw_root / "tatqa" / "finqa_by_mistake.jsonl").write_text("\n".join(_real_finqa_lines()[:5]), encoding="utf-8")

    finqa = rs.load_source(con, "finqa", raw_root)
    tatqa = rs.load_source(con, "tatqa", raw_root)

    rejects = con.execute("SELECT source_file, record_key, reason, detail FROM raw.rejected_records "
                          "WHERE reason = 'wrong_format' ORDER BY 1").fetchall()
    assert [(f, k, r) for f, k, r, _ in rejects] == [
        ("finqa/convfinqa_dev.json", "finqa/convfinqa_dev.json", "wrong_format"),
        ("finqa/convfinqa_train.jsonl", "finqa/convfinqa_train.jsonl", "wrong_format"),
        ("tatqa/finqa_by_mistake.jsonl", "tatqa/finqa_by_mistake.jsonl", "wrong_format"),
        ("tatqa/lines.json", "tatqa/lines.json", "wrong_format"),
    ]
    details = {f: d for f, _, _, d in rejects}
    assert "JSON lines" in details["finqa/convfinqa_train.jsonl"]
    assert "ConvFinQA" in details["finqa/convfinqa_dev.json"]
    assert "*.jsonl" in details["tatqa/lines.json"]
    assert "TAT-QA" in details["tatqa/finqa_by_mistake.jsonl"]
    assert finqa.rejected == 2 and tatqa.rejected == 2  # one rejection per file, not one per line
    assert finqa.counts["finqa_questions"] == N_FINQA_LINES  # the good file is untouched


def test_every_promised_format_is_read(raw_root: Path, con) -> None:
    """FinQA as JSON lines or a JSON list (flat or the original release's `qa` layout); TAT-QA as a JSON list
    or JSON lines. Files no rule reads are listed, folders no source reads are named."""
    extra = [json.loads(line) for line in _real_finqa_lines()[N_FINQA_LINES:N_FINQA_LINES + 6]]
    flat, nested = extra[:3], extra[3:]
    (raw_root / "finqa" / "more_flat.json").write_text(json.dumps(flat), encoding="utf-8")
    original = [{k: v for k, v in r.items() if k not in ("question", "answer", "program", "exe_ans", "gold_inds")}
                | {"qa": {k: r[k] for k in ("question", "answer", "program", "exe_ans", "gold_inds")}} for r in nested]
    (raw_root / "finqa" / "more_original_layout.json").write_text(json.dumps(original), encoding="utf-8")
    more_docs = _real_tatqa_docs()[N_TATQA_DOCS:N_TATQA_DOCS + 2]
    (raw_root / "tatqa" / "more.jsonl").write_text("\n".join(json.dumps(d) for d in more_docs), encoding="utf-8")
    (raw_root / "finqa" / "questions.csv").write_text("id,question\n")
    (raw_root / "convfinqa").mkdir()
    (raw_root / "convfinqa" / "train.json").write_text("[]")

    finqa = rs.load_source(con, "finqa", raw_root)
    tatqa = rs.load_source(con, "tatqa", raw_root)

    loaded = {r[0]: r[1] for r in con.execute("SELECT id, source_file FROM raw.finqa_questions").fetchall()}
    assert all(loaded[r["id"]] == "finqa/more_flat.json" for r in flat)
    assert all(loaded[r["id"]] == "finqa/more_original_layout.json" for r in nested)
    program = con.execute("SELECT program, question FROM raw.finqa_questions WHERE id = ?", [nested[0]["id"]]).fetchone()
    assert program == (nested[0]["program"], nested[0]["question"])
    assert finqa.rejected == 0 and finqa.counts["finqa_questions"] == N_FINQA_LINES + 6
    assert tatqa.counts["tatqa_tables"] == N_TATQA_DOCS + 2
    assert "tatqa/more.jsonl" in tatqa.files
    assert finqa.ignored_files == ["finqa/questions.csv"]
    assert rs.unclaimed_folders(raw_root) == ["convfinqa/"]


def test_a_source_that_loses_most_records_fails_naming_the_source(raw_root: Path, con) -> None:
    lines = _real_finqa_lines()[:N_FINQA_LINES]
    data = [line.encode("utf-8").replace(b'"id": "', b'"id": "\xff', 1) if i % 3 else line.encode("utf-8")
            for i, line in enumerate(lines)]
    (raw_root / "finqa" / "finqa_examples.jsonl").write_bytes(b"\n".join(data))
    res = rs.load_source(con, "finqa", raw_root)
    assert res.rejected_share > rs.MAX_REJECTED_SHARE
    assert res.failure() is not None and res.failure().startswith("source finqa:")
    # nothing loadable at all
    (raw_root / "finqa" / "finqa_examples.jsonl").write_text(json.dumps(_convfinqa_records(3)))
    res = rs.load_source(con, "finqa", raw_root)
    assert res.records_loaded == 0 and "no record loaded" in res.failure()
    # a source with no files does not fail
    shutil.rmtree(raw_root / "finqa")
    assert rs.load_source(con, "finqa", raw_root).failure() is None
