"""Training data and the training environment: oracle conversations are real trajectories, aliases hide real
names and only copied aliases work, configs load strictly."""

from __future__ import annotations

import json
import re

import pytest

from rl_assets.prompts import SYSTEM_PROMPT
from rl_assets.sandbox import quote_column
from rl_assets.training.environment import TOOLS, EntityAliases, TrainingEnv
from rl_assets.training.trajectories import (MISTAKES, NotClonable, copyable_number, oracle_conversation, replay,
                                             tool_calls)


def test_oracle_conversations_replay_to_a_correct_answer_through_the_environment(oracle_conversations, snapshot_dir):
    env = TrainingEnv(snapshot_dir, table_alias_prob=0.5, description_chars=0)
    for task, conversation in oracle_conversations:
        outputs = replay(conversation, env, task)  # a fresh episode, same aliases (same alias_seed)
        shown = [m["content"] for m in conversation if m["role"] == "tool"]
        assert outputs == shown
        assert env.get_reward() == 1.0, task["task_id"]
        assert [t for t, _ in tool_calls(conversation)][:2] == ["get_descriptions", "get_table_info"]
        assert tool_calls(conversation)[-1][0] == "submit_answer"
        assert env.report["rubric"]["inspected_schema_before_query"] is True
    assert len({t["task_id"] for t, _ in oracle_conversations}) == len(oracle_conversations)


def test_aliased_conversations_never_show_the_real_company(oracle_conversations):
    for task, conversation in oracle_conversations:
        text = json.dumps(conversation)
        company = task["world_id"]
        assert f'"{company}"' not in text and f"Company: {company}\\n" not in text
        named = {args["company_name"] for _, args in tool_calls(conversation) if "company_name" in args}
        assert len(named) == 1 and named != {company}
        assert f"Company: {named.pop()}\\n" in text  # the alias the agent was told is the one it uses


def test_table_aliases_come_in_several_shapes_and_are_distinct():
    import random

    from rl_assets.training.environment import random_table_aliases

    shapes = set()
    for seed in range(60):
        names = random_table_aliases(random.Random(seed), 40)
        assert len(set(names)) == 40
        shapes.add("report" if "report_table" in names else names[0].split("_")[0] if names[0][-1].isdigit() else "words")
    assert shapes == {"page", "table", "report", "words"}  # a model must copy names, not learn one shape


def test_only_the_copied_alias_reaches_the_company(snapshot_dir, tasks):
    env = TrainingEnv(snapshot_dir, table_alias_prob=1.0, description_chars=0)
    task = next(t for t in tasks if t["split"] == "train" and t["question_type"] == "single_table")
    observation = env.reset(**task, alias_seed=7)
    aliases = env.aliases
    assert f"Company: {aliases.company_alias}\n" in observation and task["world_id"] not in observation
    listing = json.loads(env.get_descriptions(aliases.company_alias))
    assert sorted(listing) == sorted(aliases.tables.values()) and not set(listing) & set(aliases.tables)
    assert env.get_descriptions(task["world_id"]).startswith("Error")  # the memorisable real name does not work
    gold = json.loads(task["gold_operands"])[0]
    table = aliases.tables[gold["table"]]
    info = json.loads(env.get_table_info(aliases.company_alias, table))
    assert info["table_name"] == table
    rows = json.loads(env.sql_query(aliases.company_alias, table,
                                    f'SELECT "{gold["column"]}" FROM {table} WHERE "{gold["row_label_column"]}" = '
                                    f"'{gold['row_label']}'"))
    assert gold["cell_text"] in [next(iter(r.values())) for r in rows]
    rubric = env.report["rubric"]
    assert rubric["hallucinated_identifiers"] == 1 and rubric["inspected_schema_before_query"] is True
    # telemetry and grading see the real names
    assert {c["arguments"].get("company_name") for c in env.report["tool_calls"]} >= {task["world_id"]}


def test_aliases_are_deterministic_and_never_a_real_company(snapshot_dir):
    taken = frozenset({"apple", "ford"})
    first = EntityAliases.draw(3, "apple", ["t1", "t2"], 1.0, taken)
    assert first == EntityAliases.draw(3, "apple", ["t1", "t2"], 1.0, taken)
    drawn = {EntityAliases.draw(seed, "apple", [], 0.0, taken).company_alias for seed in range(200)}
    assert len(drawn) > 150 and not drawn & taken
    assert any(a.startswith("tatqa_") for a in drawn) and any(a[-4:].isdigit() for a in drawn)


def test_training_env_refuses_other_splits_and_keeps_finqaenv_tools(snapshot_dir, tasks):
    from rl_assets.env import FinQAEnv
    from transformers.utils import get_json_schema

    env = TrainingEnv(snapshot_dir)
    with pytest.raises(ValueError):
        env.reset(**next(t for t in tasks if t["split"] == "test"))
    for cls in (FinQAEnv, TrainingEnv):  # TRL makes every other public method a tool: a helper must be private
        public = {n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n))} - {"reset", "get_reward"}
        assert public == set(TOOLS), cls
    for name in TOOLS:  # TRL renders the tool schema from these
        assert get_json_schema(getattr(env, name)) == get_json_schema(getattr(FinQAEnv(snapshot=snapshot_dir), name))


def test_sft_examples_mix_whole_conversations_and_early_turn_prefixes(oracle_conversations):
    from rl_assets.training.data import sft_examples

    conversations = [c for _, c in oracle_conversations[:6]]
    examples = sft_examples(conversations, [1, 2])
    assert examples[0] == conversations[0] and examples[3] == conversations[3]
    for example, turns in ((examples[1], 1), (examples[2], 2), (examples[4], 1)):
        assert example[-1]["role"] == "assistant" and sum(m["role"] == "assistant" for m in example) == turns
    assert examples[1][-1]["tool_calls"][0]["function"]["name"] == "get_descriptions"
    assert examples[2][-1]["tool_calls"][0]["function"]["name"] == "get_table_info"
    assert sft_examples(conversations, []) == conversations


@pytest.mark.parametrize("cell, value, expected", [
    ("$1,234", 1234.0, "1,234"), ("(56)", -56.0, "(-56)"), ("3.4%", 3.4, "3.4"), ("$(1,000)", -1000.0, "(-1,000)"),
])
def test_calculator_operands_are_copyable_from_cells(cell, value, expected):
    assert copyable_number(cell, value) == expected


def test_sft_rows_render_exactly_like_the_conversation(oracle_conversations, tiny_tokenizer, snapshot_dir):
    from transformers.utils import get_json_schema

    from rl_assets.env import FinQAEnv
    from rl_assets.rollouts import env_tools
    from rl_assets.training.data import sft_row

    tools = [get_json_schema(t) for t in env_tools(FinQAEnv(snapshot=snapshot_dir))]
    _, conversation = oracle_conversations[0]
    row = sft_row(conversation, json.dumps(tools))
    rendered_row = tiny_tokenizer.apply_chat_template(row["messages"], tools=json.loads(row["tools"]), tokenize=False)
    rendered = tiny_tokenizer.apply_chat_template(conversation, tools=tools, tokenize=False)
    assert rendered_row == rendered
    masks = tiny_tokenizer.apply_chat_template(row["messages"], tools=tools, tokenize=True, return_dict=True,
                                               return_assistant_tokens_mask=True)
    trained = tiny_tokenizer.decode([t for t, m in zip(masks["input_ids"], masks["assistant_masks"]) if m])
    assert '"name": "get_descriptions"' in trained and "tool_response" not in trained and "Question:" not in trained


def test_configs_load_with_overrides_and_reject_unknown_keys(tmp_path):
    from rl_assets.training.config import ConfigError, available_configs, load_config

    assert {"smollm2-cpu", "smollm2-cpu-long", "smollm2-test", "tiny-test", "tiny-local", "tiny-cpu-long", "tiny-gpu",
            "qwen3-4b-lora"} <= set(available_configs())
    for name in available_configs():
        assert load_config(name).name == name
    config = load_config("tiny-test", ["grpo.max_steps=7", "reward.correct=0.5", "data.sources=[sec10k]"])
    assert (config.grpo.max_steps, config.reward.correct, config.data.sources) == (7, 0.5, ["sec10k"])
    assert config.hash != load_config("tiny-test").hash
    with pytest.raises(ConfigError, match="grpo.max_stepz"):
        load_config("tiny-test", ["grpo.max_stepz=3"])
    with pytest.raises(ConfigError, match="must be int"):
        load_config("tiny-test", ["grpo.max_steps=lots"])
    for fraction in ("sft.recovery_demos=1.5", "data.table_alias_prob=-0.1", "data.short_listing_prob=2",
                     "data.column_alias_prob=1.5"):
        with pytest.raises(ConfigError, match="between 0 and 1"):
            load_config("tiny-test", [fraction])
    bad = tmp_path / "bad.yaml"
    bad.write_text("sft: [1, 2]\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)
    assert load_config("qwen3-4b-lora").model.lora.r == 32


def _recovery_demonstrations(snapshot_dir, mistake: str, wanted: int) -> list[tuple[dict, list, list]]:
    """(task, plain oracle conversation, the same episode with `mistake`) for the first train episodes that have one."""
    from rl_assets.snapshot import read_tasks
    from rl_assets.training.data import episode_stream

    env = TrainingEnv(snapshot_dir, table_alias_prob=0.5, description_chars=0)
    stream = episode_stream(read_tasks(snapshot_dir, splits=["train"], question_types=["single_table"]), 0, True)
    found = []
    for _ in range(4 * wanted):
        task = next(stream)
        try:
            plain = oracle_conversation(env, task, SYSTEM_PROMPT)
        except NotClonable:
            continue
        demo = oracle_conversation(env, task, SYSTEM_PROMPT, mistake)
        if any(m.get("mistake") for m in demo):
            found.append((task, plain, demo))
        if len(found) == wanted:
            break
    return found


@pytest.mark.parametrize("mistake", MISTAKES)
def test_recovery_demonstrations_show_one_wrong_call_its_real_error_then_the_oracle(snapshot_dir, mistake):
    import re

    env = TrainingEnv(snapshot_dir, table_alias_prob=0.5, description_chars=0)
    demos = _recovery_demonstrations(snapshot_dir, mistake, 6)
    assert len(demos) == 6
    for task, plain, demo in demos:
        wrong = [i for i, m in enumerate(demo) if m.get("mistake")]
        assert len(wrong) == 1 and demo[wrong[0]]["role"] == "assistant"
        i = wrong[0]
        output = demo[i + 1]["content"]
        assert output.startswith("[]\nNo row has ") if mistake == "no_rows" else output.startswith("Error")
        assert demo[:i] + demo[i + 2:] == plain  # the rest is the oracle's conversation, unchanged
        assert demo[i + 2]["tool_calls"][0]["function"]["name"] == demo[i]["tool_calls"][0]["function"]["name"]
        assert demo[i + 2]["tool_calls"] != demo[i]["tool_calls"]  # the next call is a different one
        if mistake == "unknown_table":  # the hint names the table the agent sees, which the next call copies
            right = demo[i + 2]["tool_calls"][0]["function"]["arguments"]["table_name"]
            assert right in re.search(r"Closest: (.*?)\. Tables:", output).group(1).split(", ")
        if mistake == "no_rows":  # the hint names the row label the next call writes
            label = re.search(r"= ('(?:[^']|'')*')$", demo[i + 2]["tool_calls"][0]["function"]["arguments"]["query"]).group(1)
            assert label in output.split("Closest row labels: ")[1], output
        assert replay(demo, env, task) == [m["content"] for m in demo if m["role"] == "tool"]
        assert env.get_reward() == 1.0
    with pytest.raises(ValueError, match="unknown mistake"):
        oracle_conversation(env, demos[0][0], SYSTEM_PROMPT, "typo")


def test_an_unknown_tables_hint_is_picked_among_the_aliases_the_agent_sees(snapshot_dir, tasks):
    env = TrainingEnv(snapshot_dir, table_alias_prob=1.0, description_chars=0)
    task = next(t for t in tasks if t["split"] == "train" and t["question_type"] == "single_table")
    env.reset(**task, alias_seed=7)
    table = env.aliases.tables[json.loads(task["gold_operands"])[0]["table"]]
    error = env.get_table_info(env.aliases.company_alias, table + "_info")
    assert error.startswith("Error: unknown table") and f"Closest: {table}" in error
    assert not set(env.aliases.tables) & set(error.replace(",", " ").replace(".", " ").split())  # no real name shown


def test_mistake_turns_are_context_not_training_targets_even_through_arrow(snapshot_dir, tiny_tokenizer):
    from datasets import Dataset
    from transformers.utils import get_json_schema

    from rl_assets.env import FinQAEnv
    from rl_assets.rollouts import env_tools
    from rl_assets.training.data import sft_examples, sft_row

    tools = [get_json_schema(t) for t in env_tools(FinQAEnv(snapshot=snapshot_dir))]
    (_, plain, demo), = _recovery_demonstrations(snapshot_dir, "unknown_column", 1)
    # as the SFT stage hands it to TRL: through an Arrow dataset, which gives every message a `mistake` (None or True)
    rows = Dataset.from_list([sft_row(demo, json.dumps(tools)), sft_row(plain, json.dumps(tools))])

    def render(messages):
        out = tiny_tokenizer.apply_chat_template(messages, tools=tools, tokenize=True, return_dict=True,
                                                 return_assistant_tokens_mask=True)
        text = tiny_tokenizer.apply_chat_template(messages, tools=tools, tokenize=False)
        return text, tiny_tokenizer.decode([t for t, m in zip(out["input_ids"], out["assistant_masks"]) if m])

    demo_text, demo_trained = render(rows[0]["messages"])
    plain_text, plain_trained = render(rows[1]["messages"])
    unmarked_text, unmarked_trained = render([{k: v for k, v in m.items() if k != "mistake"} for m in demo])
    wrong = demo[[m.get("mistake") for m in demo].index(True)]["tool_calls"][0]["function"]["arguments"]["query"]
    wrong_query = json.dumps(wrong, ensure_ascii=False)[1:-1]  # as the template's tojson writes it
    assert demo_text == unmarked_text and wrong_query in demo_text  # the mistake is shown, as any other turn
    assert wrong_query not in demo_trained and wrong_query in unmarked_trained  # but not trained on
    assert demo_trained == plain_trained  # what is trained: exactly the oracle's turns
    # a prefix cut after the third turn counts only real turns: it ends with the query that corrects the mistake
    cut = sft_examples([demo, demo], [3])[1]
    assert cut[-1]["tool_calls"][0]["function"]["name"] == "sql_query" and not cut[-1].get("mistake")


@pytest.mark.parametrize("table_alias_prob", [0.0, 1.0])
def test_a_short_listing_shows_the_tasks_tables_and_at_most_three_others_the_rest_do_not_exist(snapshot_dir, tasks,
                                                                                             table_alias_prob):
    from rl_assets.training.environment import SHORT_LISTING_OTHERS

    env = TrainingEnv(snapshot_dir, table_alias_prob=table_alias_prob, short_listing_prob=1.0, description_chars=0)
    train = [t for t in tasks if t["split"] == "train" and t["question_type"] == "single_table"]
    sizes = set()
    for seed, task in enumerate(train[:12]):
        env.reset(**task, alias_seed=seed)
        aliases = env.aliases
        shown = lambda name: aliases.tables.get(name, name)  # noqa: E731
        listing = json.loads(env.get_descriptions(aliases.company_alias))
        gold = json.loads(task["gold_tables"])
        everything = list(env._world.tables[task["world_id"]])
        assert {shown(name) for name in gold} <= set(listing)
        assert len(listing) <= len(gold) + SHORT_LISTING_OTHERS and len(listing) == len(everything) - len(aliases.hidden)
        assert not aliases.hidden & set(gold)
        if table_alias_prob:  # aliases are drawn for the listed tables alone: no alias for a hidden table
            assert set(aliases.tables) == set(everything) - aliases.hidden and sorted(listing) == sorted(aliases.tables.values())
        sizes.add(len(listing))
        for hidden in sorted(aliases.hidden)[:2]:  # a table the episode does not list is unknown to every tool
            for output in (env.get_table_info(aliases.company_alias, hidden),
                           env.sql_query(aliases.company_alias, hidden, f"SELECT * FROM {hidden}")):
                assert output.startswith("Error: unknown table") and hidden not in output.split("Tables:")[1]
    assert len(sizes) > 1  # listings of several lengths, down to the task's own tables
    plain = TrainingEnv(snapshot_dir, table_alias_prob=table_alias_prob, description_chars=0)
    plain.reset(**train[0], alias_seed=0)
    assert not plain.aliases.hidden
    assert len(json.loads(plain.get_descriptions(plain.aliases.company_alias))) == len(plain._world.tables[train[0]["world_id"]])


def test_oracle_conversations_over_short_listings_replay_to_the_answer(snapshot_dir):
    from rl_assets.snapshot import read_tasks
    from rl_assets.training.data import episode_stream

    env = TrainingEnv(snapshot_dir, table_alias_prob=0.5, short_listing_prob=1.0, description_chars=0)
    stream = episode_stream(read_tasks(snapshot_dir, splits=["train"], question_types=["single_table"]), 0, True)
    played = 0
    for attempt in range(20):
        task = next(stream)
        try:  # recovery demonstrations too: an unknown table's hint is picked among the listed tables
            conversation = oracle_conversation(env, task, SYSTEM_PROMPT, (None, *MISTAKES)[attempt % 4])
        except NotClonable:
            continue
        listing = json.loads(next(m["content"] for m in conversation if m.get("name") == "get_descriptions"))
        assert len(listing) <= len(json.loads(task["gold_tables"])) + 3
        assert replay(conversation, env, task) == [m["content"] for m in conversation if m["role"] == "tool"]
        assert env.get_reward() == 1.0
        played += 1
    assert played >= 10


def test_renamed_year_columns_are_the_only_column_names_that_work(snapshot_dir, tasks):
    """With column aliases an episode's year columns (`2024`) show, answer and fail under one FinQA / TAT-QA shape
    (`fiscal_2024`, ...); the bare year was never shown, so writing it is an unknown column."""
    from rl_assets.training.environment import COLUMN_ALIAS_STYLES, YEAR_COLUMN

    env = TrainingEnv(snapshot_dir, table_alias_prob=0.5, column_alias_prob=1.0, description_chars=0)
    plain = TrainingEnv(snapshot_dir, table_alias_prob=0.5, description_chars=0)
    train = [t for t in tasks if t["split"] == "train" and t["question_type"] == "single_table"]
    styles, checked = set(), 0
    for seed, task in enumerate(train[:40]):
        op = json.loads(task["gold_operands"])[0]
        if not YEAR_COLUMN.fullmatch(op["column"]) or op["row_label_column"] == op["column"]:
            continue
        env.reset(**task, alias_seed=seed)
        aliases = env.aliases
        company, table = aliases.company_alias, aliases.tables.get(op["table"], op["table"])
        info = json.loads(env.get_table_info(company, table))
        shown = [c["name"] for c in info["columns"]]
        real = list(env._world.tables[task["world_id"]][op["table"]].columns)
        alias = aliases.column_style.format(year=op["column"])
        assert alias in shown and op["column"] not in shown and len(shown) == len(real)
        assert not any(YEAR_COLUMN.fullmatch(c) for c in shown)  # every year column renamed, in one style
        assert set(re.findall(r'"([^"]+)"', info["note"])) <= set(shown)  # the note's example is a shown name
        label = op["row_label"].replace("'", "''")
        for written in (alias, f'"{alias}"', alias.upper()):  # bare, quoted, any case: as SQL reads names
            rows = json.loads(env.sql_query(company, table, f"SELECT {written} FROM {table} WHERE \"{info['row_label_column']}\" = '{label}'"))
            assert rows and list(rows[0]) == [alias] and op["cell_text"] in [r[alias] for r in rows]
        error = env.sql_query(company, table, f"SELECT \"{op['column']}\" FROM {table} WHERE \"{info['row_label_column']}\" = '{label}'")
        assert error.startswith("Error (unknown_column)") and f'Unknown column "{op["column"]}"' in error
        listed = error.split("Available columns: ")[1].split(".")[0]
        assert all(quote_column(c) in listed for c in shown) and f'"{op["column"]}"' not in listed
        plain.reset(**task, alias_seed=seed)  # without column aliases: the real columns, no draw
        assert plain.aliases.column_style is None
        assert [c["name"] for c in json.loads(plain.get_table_info(company, table))["columns"]] == real
        styles.add(aliases.column_style)
        checked += 1
    assert checked >= 5 and len(styles) > 1 and styles <= set(COLUMN_ALIAS_STYLES)


def test_oracle_conversations_over_renamed_columns_replay_to_the_answer(snapshot_dir):
    from rl_assets.snapshot import read_tasks
    from rl_assets.training.data import episode_stream

    env = TrainingEnv(snapshot_dir, table_alias_prob=0.5, short_listing_prob=0.5, column_alias_prob=1.0, description_chars=0)
    stream = episode_stream(read_tasks(snapshot_dir, splits=["train"], question_types=["single_table"]), 0, True)
    played, renamed = 0, 0
    for attempt in range(20):
        task = next(stream)
        try:  # recovery demonstrations too: a wrong column is often the bare year of a renamed one
            conversation = oracle_conversation(env, task, SYSTEM_PROMPT, (None, *MISTAKES)[attempt % 4])
        except NotClonable:
            continue
        queries = [a["query"] for tool, a in tool_calls(conversation) if tool == "sql_query"]
        shown = {alias for table in json.loads(task["gold_tables"]) for alias in env._shown_columns(table).values()}
        renamed += any(alias in query for alias in shown for query in queries)  # the oracle copies the shown names
        assert replay(conversation, env, task) == [m["content"] for m in conversation if m["role"] == "tool"]
        assert env.get_reward() == 1.0
        played += 1
    assert played >= 10 and renamed >= 1
