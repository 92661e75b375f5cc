"""FinQAEnv on the real snapshot: tools, messages, grading, telemetry, rubric, TRL compatibility."""

from __future__ import annotations

import inspect
import json
import re

import pytest

from rl_assets.env import FinQAEnv
from rl_assets.oracle import operand_query
from rl_assets.sandbox import quote_literal

TOOLS = ["calculator", "get_descriptions", "get_table_info", "sql_query", "submit_answer"]


@pytest.fixture
def env(snapshot_dir):
    return FinQAEnv(snapshot=snapshot_dir)


def _task(tasks, **where):
    return next(t for t in tasks if all(t[k] == v for k, v in where.items()))


def test_public_methods_are_exactly_the_tools_trl_will_expose():
    # TRL 1.16 exposes every public function of the class except reset / get_reward as a tool
    public = sorted(n for n, _ in inspect.getmembers(FinQAEnv, predicate=inspect.isfunction) if not n.startswith("_"))
    assert public == sorted(TOOLS + ["reset", "get_reward"])


@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_has_a_json_schema_from_its_docstring(tool):
    from transformers.utils import get_json_schema

    schema = get_json_schema(getattr(FinQAEnv, tool))
    assert schema["function"]["name"] == tool
    assert schema["function"]["description"]
    params = schema["function"]["parameters"]["properties"]
    signature = [p for p in inspect.signature(getattr(FinQAEnv, tool)).parameters if p != "self"]
    assert sorted(params) == sorted(signature)
    assert all(p.get("description") for p in params.values())


def test_reset_returns_the_company_and_question(env, tasks):
    task = _task(tasks, source="sec10k", question_type="multi_table")
    text = env.reset(**task)
    assert text == f"\n\nCompany: {task['world_id']}\nQuestion: {task['question']}"
    assert env.tool_calls == []


def test_listing_and_schema_show_structure_not_numbers(env, tasks):
    task = _task(tasks, source="sec10k", analytic_type="lookup")
    op = json.loads(task["gold_operands"])[0]
    env.reset(**task)
    listing = json.loads(env.get_descriptions(task["world_id"]))
    assert op["table"] in {t["table_name"] for t in listing}
    info = json.loads(env.get_table_info(task["world_id"], op["table"]))
    assert op["column"] in [c["name"] for c in info["columns"]]
    assert op["row_label"] in info["row_labels"]
    assert op["cell_text"] not in json.dumps(info)  # schema, not the numbers


def test_a_tables_note_quotes_only_its_own_columns(env, tasks):
    """Every double-quoted name in a table's note is one of that table's columns (a fixed `"2024"` was copied)."""
    checked = 0
    for task in tasks[:60]:
        env.reset(**task)
        for table in json.loads(task["gold_tables"]):
            info = json.loads(env.get_table_info(task["world_id"], table))
            columns = [c["name"] for c in info["columns"]]
            quoted = re.findall(r'"([^"]+)"', info["note"])
            assert all(name in columns for name in quoted), (table, info["note"], columns)
            assert bool(quoted) == any(not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", c) for c in columns), info["note"]
            checked += 1
    assert checked >= 60


def test_sql_query_returns_the_gold_cell(env, tasks):
    task = _task(tasks, source="sec10k", analytic_type="lookup")
    op = json.loads(task["gold_operands"])[0]
    env.reset(**task)
    rows = json.loads(env.sql_query(task["world_id"], op["table"], operand_query(op)))
    assert op["cell_text"] in [r[op["column"]] for r in rows]


def test_an_empty_result_names_the_closest_row_labels(env, tasks):
    """A label written in another case or with a word too gives `[]` and the closest real labels (held-out policies
    wrote FinQA's `Acquired licenses` as `acquired licenses`); an empty result for any other reason adds nothing."""
    checked = 0
    for task in [t for t in tasks if t["question_type"] == "single_table"][:40]:
        op = json.loads(task["gold_operands"])[0]
        label, label_column = op["row_label"], op["row_label_column"]
        labels = _row_labels(env, task, op)
        if label.lower() == label or sum(x.lower() == label.lower() for x in labels) > 1:
            continue  # a lower-case label would match; two labels that differ in case only are both close

        def query(where: str) -> str:
            return env.sql_query(task["world_id"], op["table"], f'SELECT "{op["column"]}" FROM {op["table"]} WHERE {where}')

        lower = query(f'"{label_column}" = {quote_literal(label.lower())}')
        assert lower.startswith("[]\nNo row has "), lower
        assert lower.split("Closest row labels: ")[1].startswith(quote_literal(label)), lower  # the same label first
        wordier = query(f'"{label_column}" = {quote_literal("total " + label)}')
        assert wordier.startswith("[]") and quote_literal(label) in wordier, wordier
        assert query(f'"{label_column}" = {quote_literal(label)} AND 1 = 0') == "[]"  # a real label: nothing to add
        assert query(f'"{label_column}" LIKE \'%no such words%\'') == "[]"  # a pattern is not a label
        assert [c.error_kind for c in env.tool_calls[-4:]] == [None] * 4  # an empty result is not an error
        checked += 1
    assert checked >= 5


def _row_labels(env, task, op) -> list[str]:
    env.reset(**task)
    return json.loads(env.get_table_info(task["world_id"], op["table"]))["row_labels"]


def test_clear_errors_that_list_what_exists(env, tasks):
    task = _task(tasks, source="sec10k", analytic_type="lookup")
    op = json.loads(task["gold_operands"])[0]
    company = task["world_id"]
    env.reset(**task)
    unknown_company = env.get_descriptions(company + "x")
    assert "unknown company" in unknown_company and company in unknown_company
    unknown_table = env.get_table_info(company, "no_such_table")
    assert "unknown table" in unknown_table and op["table"] in unknown_table
    unknown_column = env.sql_query(company, op["table"], f"SELECT nope FROM {op['table']} WHERE nope = 1")
    assert "nope" in unknown_column and op["column"] in unknown_column
    star = env.sql_query(company, op["table"], f"SELECT * FROM {op['table']}")
    assert star.startswith("Error") and "SELECT *" in star
    unfiltered = env.sql_query(company, op["table"], f'SELECT "{op["column"]}" FROM {op["table"]}')
    assert unfiltered.startswith("Error") and "WHERE" in unfiltered
    other = _task(tasks, source="finqa")
    cross = env.sql_query(company, op["table"], f"SELECT item FROM {other['world_id']}.page_1 LIMIT 1")
    assert cross.startswith("Error")
    kinds = [c.error_kind for c in env.tool_calls]
    assert kinds == ["unknown_company", "unknown_table", "unknown_column", "unfiltered_query", "unfiltered_query", "forbidden_table"]


def test_tools_never_raise_on_wrong_argument_types(env, tasks):
    env.reset(**tasks[0])
    for output in (env.get_descriptions(None), env.get_table_info(3, None), env.sql_query("apple", "x", None),
                   env.calculator(None), env.calculator("__import__('os')"), env.submit_answer(None)):
        assert isinstance(output, str) and output.startswith("Error")
    assert all(not c.ok for c in env.tool_calls)


def test_calculator(env):
    assert env.calculator("(29749 - 16741) / 16741 * 100") == "77.7014515262"
    assert env.calculator("1,452.4 - 1,146.2") == "306.2"
    assert env.calculator("1/0").startswith("Error")
    assert env.calculator("9 ** 999").startswith("Error")


def test_reward_grades_the_first_submission_only(env, tasks):
    task = _task(tasks, source="sec10k", analytic_type="pct_change")
    env.reset(**task)
    assert env.get_reward() == 0.0  # no answer yet
    env.submit_answer(f"{task['gold_value'] * 1.5:.4f}%")
    assert env.submit_answer(f"{task['gold_value']:.4f}%").startswith("Error")
    assert env.get_reward() == 0.0
    env.reset(**task)
    env.submit_answer(f"{task['gold_value']:.4f}%")
    assert env.get_reward() == 1.0


def test_report_is_json_and_rubric_reflects_behaviour(env, tasks, snapshot_dir):
    task = _task(tasks, source="sec10k", analytic_type="lookup")
    op = json.loads(task["gold_operands"])[0]
    company = task["world_id"]
    env.reset(**task)
    # a sloppy agent: queries before looking, guesses a table, then recovers
    env.sql_query(company, "made_up_table", "SELECT a FROM made_up_table WHERE a = 1")
    env.get_descriptions(company)
    env.get_descriptions(company)
    env.get_table_info(company, op["table"])
    env.sql_query(company, op["table"], operand_query(op))
    env.submit_answer(op["cell_text"])
    report = json.loads(json.dumps(env.report))
    assert report["snapshot_hash"] == snapshot_dir.name and report["task_id"] == task["task_id"]
    rubric = report["rubric"]
    assert rubric["listed_tables_before_query"] is False
    assert rubric["inspected_schema_before_query"] is False  # made_up_table never inspected
    assert rubric["hallucinated_identifiers"] == 1
    assert rubric["recovered_after_error"] is True
    assert rubric["redundant_calls"] == 1
    assert rubric["rows_pulled"] >= 1
    assert rubric["answered"] is True and rubric["correct"] is True and report["reward"] == 1.0
    calls = report["tool_calls"]
    assert [c["tool"] for c in calls] == ["sql_query", "get_descriptions", "get_descriptions", "get_table_info", "sql_query", "submit_answer"]
    assert calls[0]["error_kind"] == "unknown_table" and calls[4]["rows"] >= 1
    assert all(c["latency_ms"] >= 0 and c["chars"] > 0 for c in calls)


def test_a_disciplined_episode_scores_well_on_the_rubric(env, tasks):
    task = _task(tasks, source="sec10k", analytic_type="lookup")
    op = json.loads(task["gold_operands"])[0]
    env.reset(**task)
    env.get_descriptions(task["world_id"])
    env.get_table_info(task["world_id"], op["table"])
    env.sql_query(task["world_id"], op["table"], operand_query(op))
    rubric = env.report["rubric"]
    assert rubric["listed_tables_before_query"] is True
    assert rubric["inspected_schema_before_query"] is True
    assert rubric["hallucinated_identifiers"] == 0 and rubric["errors"] == 0
    assert rubric["recovered_after_error"] is None
    assert rubric["answered"] is False and rubric["correct"] is False


def test_environments_with_different_row_limits_share_the_world(snapshot_dir, tasks):
    from rl_assets.sandbox import SandboxLimits

    task = _task(tasks, source="sec10k", analytic_type="lookup")
    op = json.loads(task["gold_operands"])[0]
    small = FinQAEnv(snapshot=snapshot_dir, limits=SandboxLimits(max_rows=1))
    large = FinQAEnv(snapshot=snapshot_dir)
    assert small._world is large._world
    query = f'SELECT "{op["row_label_column"]}" FROM {op["table"]} LIMIT 2'
    for env in (small, large):
        env.reset(**task)
    assert "truncated" in small.sql_query(task["world_id"], op["table"], query)
    full = json.loads(large.sql_query(task["world_id"], op["table"], query))
    assert len(full) == 2
    with pytest.raises(ValueError, match="memory_limit"):
        FinQAEnv(snapshot=snapshot_dir, limits=SandboxLimits(memory_limit="128MB"))


def test_table_listing_can_be_names_only_to_save_completion_tokens(snapshot_dir, tasks):
    task = _task(tasks, source="sec10k", analytic_type="lookup")
    full = FinQAEnv(snapshot=snapshot_dir)
    names_only = FinQAEnv(snapshot=snapshot_dir, description_chars=0)
    described = json.loads(full.get_descriptions(task["world_id"]))
    listed = json.loads(names_only.get_descriptions(task["world_id"]))
    assert listed == [t["table_name"] for t in described]
    assert len(json.dumps(listed)) < len(json.dumps(described))


def test_tools_answer_only_for_the_episode_company(env, tasks):
    task = _task(tasks, source="sec10k", analytic_type="lookup")
    other = next(t for t in tasks if t["world_id"] != task["world_id"] and t["split"] == "test")  # a held-out company
    op = json.loads(other["gold_operands"])[0]
    env.reset(**task)
    assert not env.get_descriptions(task["world_id"]).startswith("Error")
    refused = [
        env.get_descriptions(other["world_id"]),
        env.get_table_info(other["world_id"].upper(), op["table"]),  # any spelling of the company
        env.sql_query(other["world_id"], op["table"], operand_query(op)),
    ]
    for text in refused:
        assert text.startswith("Error") and repr(task["world_id"]) in text
        assert op["table"] not in text and op["cell_text"] not in text  # nothing of the other company leaks
    assert [c.error_kind for c in env.tool_calls[1:]] == ["other_company"] * 3
    rubric = env.report["rubric"]
    assert rubric["other_company_calls"] == 3 and rubric["hallucinated_identifiers"] == 0 and rubric["errors"] == 3
    env.reset(**other)  # the next episode is about that company: now it answers
    assert op["cell_text"] in env.sql_query(other["world_id"], op["table"], operand_query(op))


def test_an_unscoped_environment_answers_for_any_company(snapshot_dir, tasks):
    env = FinQAEnv(snapshot=snapshot_dir, scope_to_task_company=False)
    task = _task(tasks, source="sec10k", analytic_type="lookup")
    other = next(t for t in tasks if t["world_id"] != task["world_id"])
    env.reset(**task)
    assert not env.get_descriptions(other["world_id"]).startswith("Error")


def test_a_training_environment_refuses_tasks_of_other_splits(snapshot_dir, tasks):
    env = FinQAEnv(snapshot=snapshot_dir, splits=("train",))
    train_task = next(t for t in tasks if t["split"] == "train")
    env.reset(**train_task)
    for split in ("val", "test"):
        held_out = next(t for t in tasks if t["split"] == split)
        with pytest.raises(ValueError, match=f"split '{split}'"):
            env.reset(**held_out)
    with pytest.raises(ValueError, match="split None"):
        env.reset(**{k: v for k, v in train_task.items() if k != "split"})  # a task without a split is not train
    assert env.reset(**train_task)  # still usable
    evaluation = FinQAEnv(snapshot=snapshot_dir, splits=("val", "test"))
    with pytest.raises(ValueError, match="split 'train'"):
        evaluation.reset(**train_task)


def test_read_tasks_filters_and_leaves_out_unsolved_tasks(snapshot_dir, tasks, tmp_path):
    import shutil

    from rl_assets.snapshot import MANIFEST, read_manifest, read_tasks

    train_single = read_tasks(snapshot_dir, splits=["train"], question_types=["single_table"])
    expected = [t["task_id"] for t in tasks if t["split"] == "train" and t["question_type"] == "single_table"]
    assert [t["task_id"] for t in train_single] == expected and expected
    copy = tmp_path / snapshot_dir.name
    shutil.copytree(snapshot_dir, copy)
    manifest = read_manifest(copy)
    manifest["oracle"]["unsolved"] = [{"task_id": expected[0], "reason": "query_failed"}]
    (copy / MANIFEST).write_text(json.dumps(manifest))
    assert [t["task_id"] for t in read_tasks(copy, splits=["train"], question_types=["single_table"])] == expected[1:]


def test_grading_mode_reference_applies_the_reference_rule(snapshot_dir, tasks):
    task = _task(tasks, source="sec10k", analytic_type="pct_change")
    bare_percent = f"{task['gold_value']:.4f}"  # strict: a bare number may be the percent; reference: only the fraction
    rewards = {}
    for mode in ("strict", "reference"):
        env = FinQAEnv(snapshot=snapshot_dir, grading_mode=mode)
        env.reset(**task)
        env.submit_answer(bare_percent)
        rewards[mode] = env.get_reward()
        assert env.report["grading_mode"] == mode
    assert rewards == {"strict": 1.0, "reference": 0.0}
    with pytest.raises(ValueError, match="grading_mode"):
        FinQAEnv(snapshot=snapshot_dir, grading_mode="lenient")


def test_an_answer_in_the_wrong_scale_scores_zero(env, tasks):
    task = next(t for t in tasks if t["gold_unit"] == "number" and t["gold_scale"] == "million" and t["gold_value"])
    gold = task["gold_value"]
    for answer, reward in ((f"{gold:.6g}", 1.0), (f"{gold:.6g} million", 1.0), (f"{gold * 1e6:.8g}", 1.0),
                           (f"{gold:.6g} trillion", 0.0), (f"{gold:.6g}%", 0.0)):
        env.reset(**task)
        env.submit_answer(answer)
        assert env.get_reward() == reward, answer
