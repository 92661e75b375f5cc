"""The environment a trainer uses: `FinQAEnv` restricted to the train split, with per-episode entity aliases.

A small model trained on a handful of companies learns to *name a training company* instead of copying
the company it is asked about (measured on held-out companies: 0% right). Entity anonymisation removes
that shortcut: when a task row carries an `alias_seed`, the episode's company is renamed to a random
identifier shaped like the world's ids (`vortakel`, `xqr_2011`, `tatqa_1f0c9e2a`) and, with probability
`table_alias_prob`, its tables to made-up names of one shape per episode (`page_<n>`, `table_<n>`, a few words,
`report_table`: `random_table_aliases`). With probability `short_listing_prob` the company also lists only the
task's own tables and up to `SHORT_LISTING_OTHERS` others (`EntityAliases.hidden`: the rest do not exist in that
episode): the train split is SEC 10-K filers listing 18-71 tables each, while FinQA and TAT-QA filings list one
or two, a listing shape a policy trained on long listings alone never saw. With probability `column_alias_prob`
the year columns of the company's tables (`2024`) are renamed in one of the shapes FinQA and TAT-QA tables have
(`year_ended_december_31_2024`, `fiscal_2024`, `2024_in_millions`, ...: `COLUMN_ALIAS_STYLES`): the train split's
columns are mostly bare years 2022-2024, and a policy trained on them alone wrote `SELECT "2024"` on every held-out
table, whatever its columns. The agent sees only aliases — in the
observation and in every tool output — and its arguments are translated back before the real tool runs, so the only way
to a working call is to copy the names it was given. The real company's own name, used in an aliased
episode, is an unknown company (memorising it earns nothing). Telemetry and grading are the real
environment's, on real names.

Evaluation uses the plain `FinQAEnv`: aliases exist only during training.
"""

from __future__ import annotations

import json
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

from rl_assets.env import FinQAEnv
from rl_assets.sandbox import quote_column

CONSONANTS = "bcdfghjklmnprstvwxz"
VOWELS = "aeiou"
UNALIASED_SUFFIX = "_not_this_episode"


def _identifier_pattern(names: list[str]) -> re.Pattern | None:
    """Whole identifiers only: not preceded or followed by a letter, digit or underscore."""
    if not names:
        return None
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z0-9_])(?:{alternatives})(?![A-Za-z0-9_])")


@dataclass
class EntityAliases:
    """One episode's renaming: real company and table names <-> aliases."""

    company: str  # the real world_id
    company_alias: str
    tables: dict[str, str] = field(default_factory=dict)  # real table name -> alias
    hidden: frozenset[str] = frozenset()  # real table names this episode's company does not list (nor answer for)
    column_style: str | None = None  # year columns shown as column_style.format(year=...) (COLUMN_ALIAS_STYLES)

    def __post_init__(self):
        self._to_alias = {self.company: self.company_alias, **self.tables}
        self._to_real = {alias: real for real, alias in self._to_alias.items()}
        self._real_pattern = _identifier_pattern(list(self._to_alias))
        self._alias_pattern = _identifier_pattern(list(self._to_real))
        self._tables_by_alias = {alias.lower(): real for real, alias in self.tables.items()}
        self._aliased_tables = {real.lower() for real in self.tables}

    @classmethod
    def draw(cls, seed: int, company: str, table_names: list[str], table_alias_prob: float,
             taken: frozenset[str] = frozenset(), short_listing_prob: float = 0.0,
             task_tables: list[str] = (), column_alias_prob: float = 0.0) -> "EntityAliases":
        """Random aliases for one episode, deterministic in `seed`; never one of the `taken` names. With
        probability `short_listing_prob` only `task_tables` and up to `SHORT_LISTING_OTHERS` other tables are
        listed (the aliases are drawn for those alone: a one-table listing in the `report` style is TAT-QA's
        `["report_table"]`). With probability `column_alias_prob` the year columns are renamed in one style."""
        rng = random.Random(f"{seed}:{company}")
        alias = company
        while alias == company or alias in taken:
            alias = random_company_alias(rng)
        hidden: frozenset[str] = frozenset()
        if short_listing_prob and rng.random() < short_listing_prob:  # no draw at 0: earlier episodes unchanged
            wanted = set(task_tables)
            keep = [name for name in table_names if name in wanted]
            others = sorted(set(table_names) - wanted)
            keep += rng.sample(others, min(len(others), rng.randint(0, SHORT_LISTING_OTHERS)))
            if keep:
                hidden = frozenset(table_names).difference(keep)
                table_names = [name for name in table_names if name not in hidden]
        tables: dict[str, str] = {}
        if table_names and rng.random() < table_alias_prob:
            tables = dict(zip(sorted(table_names), random_table_aliases(rng, len(table_names))))
        column_style = None
        if column_alias_prob and rng.random() < column_alias_prob:  # no draw at 0: earlier episodes unchanged
            column_style = rng.choice(COLUMN_ALIAS_STYLES)
        return cls(company, alias, tables, hidden, column_style)

    def column_aliases(self, columns: tuple[str, ...] | list[str]) -> dict[str, str]:
        """Real column -> alias for one table of the company: its year columns in this episode's style (none
        without a style; a column whose alias the table already has keeps its name)."""
        if self.column_style is None:
            return {}
        taken = {c.lower() for c in columns}
        renamed = {c: self.column_style.format(year=c) for c in columns if YEAR_COLUMN.fullmatch(c)}
        return {real: alias for real, alias in renamed.items() if alias.lower() not in taken}

    def to_alias(self, text: str) -> str:
        """`text` (an observation or a tool output) with every real name replaced by its alias."""
        return self._real_pattern.sub(lambda m: self._to_alias[m.group(0)], text)

    def to_real_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Tool arguments as the agent wrote them (aliases) -> the arguments the real tool gets."""
        real = dict(arguments)
        company = arguments.get("company_name")
        if isinstance(company, str):
            key = company.strip().lower().replace(" ", "_")
            if key == self.company_alias:
                real["company_name"] = self.company
            elif key == self.company:  # the real name was never shown: a memorised name, not a copied one
                real["company_name"] = company + UNALIASED_SUFFIX
        table = arguments.get("table_name")
        if isinstance(table, str) and self.tables:
            key = table.strip().lower()
            if key in self._tables_by_alias:
                real["table_name"] = self._tables_by_alias[key]
            elif key in self._aliased_tables:
                real["table_name"] = table + UNALIASED_SUFFIX
        query = arguments.get("query")
        if isinstance(query, str):
            real["query"] = self._alias_pattern.sub(lambda m: self._to_real[m.group(0)], query)
        return real


TABLE_ALIAS_STYLES = ("page", "table", "words", "report")
YEAR_COLUMN = re.compile(r"(?:19|20)\d\d")
# year-column shapes of the held-out sources' tables (FinQA, TAT-QA): the train split's SEC columns are bare years
COLUMN_ALIAS_STYLES = ("year_ended_december_31_{year}", "december_31_{year}", "fiscal_{year}", "fiscal_year_{year}",
                       "{year}_in_millions", "{year}_m", "fy{year}")
SHORT_LISTING_OTHERS = 3  # a short listing: the task's tables and 0-3 others, like a FinQA or TAT-QA filing's


def random_table_aliases(rng: random.Random, count: int) -> list[str]:
    """`count` distinct made-up table names in one of the world's name shapes, or shapes like them: FinQA's
    `page_<n>`, `table_<n>`, a word or two (`cash_flow_table`; never a column name), TAT-QA's `report_table` (with
    `report_table_<k>` for the others). The only working behaviour is to copy a name from the listing, whatever its shape: a model trained
    on `page_<n>` alone copies the company id into `table_name` when a listing shows `report_table` (measured on
    held-out TAT-QA tasks)."""
    style = rng.choice(TABLE_ALIAS_STYLES)
    if style == "page":
        return [f"page_{n}" for n in rng.sample(range(1, 400), count)]
    if style == "table":
        return [f"table_{n}" for n in rng.sample(range(1, 400), count)]
    if style == "report":
        names = ["report_table", *(f"report_table_{k}" for k in rng.sample(range(2, 400), count - 1))]
        rng.shuffle(names)
        return names
    names: list[str] = []
    while len(names) < count:
        name = "_".join(rng.choice(TABLE_WORDS) for _ in range(rng.randint(1, 2))) + "_table"
        if name not in names:
            names.append(name)
    return names


TABLE_WORDS = ("cash", "flow", "revenue", "segment", "debt", "lease", "tax", "income", "assets", "equity", "shares",
               "costs", "pension", "notes", "summary", "schedule", "balance", "operating", "stock", "credit", "loans",
               "bonds", "goodwill", "expenses", "reserves", "fair", "value", "maturity", "region", "quarterly")


def random_company_alias(rng: random.Random) -> str:
    """A made-up company id in one of the world's id shapes: a word, `<ticker>_<year>`, `tatqa_<hex8>`."""
    style = rng.random()
    if style < 0.5:
        return "".join(rng.choice(CONSONANTS) + rng.choice(VOWELS) + (rng.choice(CONSONANTS) if rng.random() < 0.4 else "")
                       for _ in range(rng.randint(2, 3)))
    if style < 0.8:
        ticker = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 4)))
        return f"{ticker}_{rng.randint(1995, 2024)}"
    return "tatqa_" + "".join(rng.choice("0123456789abcdef") for _ in range(8))


class TrainingEnv(FinQAEnv):
    """`FinQAEnv` for a trainer: train split only, per-episode aliases (see the module docstring), and a
    record of every tool output the agent was shown (`outputs`), which tells how many results TRL dropped for
    overflowing `max_completion_length`."""

    def __init__(self, snapshot, *, table_alias_prob: float = 0.0, short_listing_prob: float = 0.0,
                 column_alias_prob: float = 0.0, splits=("train",), **env_kwargs):
        super().__init__(snapshot=snapshot, splits=splits, **env_kwargs)
        self.table_alias_prob = table_alias_prob
        self.short_listing_prob = short_listing_prob
        self.column_alias_prob = column_alias_prob
        self.aliases: EntityAliases | None = None
        self.outputs: list[tuple[str, dict[str, Any], str]] = []  # (tool, arguments as written, output shown)
        self.tool_seconds = 0.0  # time spent in tool calls since the trainer last cleared it

    def reset(self, **task: Any) -> str:
        observation = super().reset(**task)
        self.outputs = []
        self.aliases = None
        seed = task.get("alias_seed")
        if seed is not None and seed >= 0:
            company = task["world_id"]
            self.aliases = EntityAliases.draw(
                int(seed), company, list(self._world.tables.get(company, {})), self.table_alias_prob,
                taken=frozenset(self._world.tables), short_listing_prob=self.short_listing_prob,
                task_tables=_task_tables(task), column_alias_prob=self.column_alias_prob,
            )
            observation = self.aliases.to_alias(observation)
        return observation

    def _tool(self, tool: str, **arguments: Any) -> str:
        started = time.perf_counter()
        real = self.aliases.to_real_arguments(arguments) if self.aliases else arguments
        output = getattr(super(), tool)(**real)
        if self.aliases:
            output = self.aliases.to_alias(output)
        self.outputs.append((tool, arguments, output))
        self.tool_seconds += time.perf_counter() - started
        return output

    def _listed_tables(self, world_id: str) -> dict:
        tables = super()._listed_tables(world_id)
        if self.aliases and self.aliases.hidden and world_id == self.aliases.company:
            return {name: info for name, info in tables.items() if name not in self.aliases.hidden}
        return tables

    def _shown_columns(self, table_name: str) -> dict[str, str]:
        """Real column -> the name this episode shows, for a (real) table of the episode's company; {} when its
        columns keep their names. Private, though the oracle's trajectories read it: TRL makes every public method
        of an environment a tool."""
        if not (self.aliases and self.aliases.column_style):
            return {}
        info = self._listed_tables(self.aliases.company).get(table_name)
        return self._shown_column_names(info) if info else {}

    def _shown_column_names(self, info) -> dict[str, str]:
        if not (self.aliases and self.aliases.column_style) or info.world_id != self.aliases.company:
            return {}
        return self.aliases.column_aliases(info.columns)

    def _episode_columns(self, company_name: Any, table_name: Any) -> dict[str, str]:
        """`_shown_columns` of a tool call's (real, possibly misspelt) company and table."""
        if not (self.aliases and self.aliases.column_style):
            return {}
        world_id = self._world.resolve_company(company_name) if isinstance(company_name, str) else None
        if world_id != self.aliases.company or not isinstance(table_name, str):
            return {}
        return self._shown_columns(self._world.resolve_table(world_id, table_name) or "")

    def _sql(self, company_name: Any, table_name: Any, query: Any):
        renames = self._episode_columns(company_name, table_name)
        if not renames or not isinstance(query, str):
            return super()._sql(company_name, table_name, query)
        text, kind, rows = super()._sql(company_name, table_name, columns_to_real(query, renames))
        return columns_to_alias(text, renames, result=kind is None), kind, rows

    def _shown_table_names(self, world_id: str) -> list[str]:
        """With table aliases, an unknown table's `Closest:` hint is picked among the aliases the agent sees (a
        misspelt alias compared with the real names would suggest the wrong tables)."""
        names = super()._shown_table_names(world_id)
        if self.aliases and self.aliases.tables and world_id == self.aliases.company:
            return [self.aliases.tables.get(name, name) for name in names]
        return names

    # The tools, with FinQAEnv's signatures and docstrings (TRL builds the tool schema from them).
    def get_descriptions(self, company_name: str) -> str:
        return self._tool("get_descriptions", company_name=company_name)

    def get_table_info(self, company_name: str, table_name: str) -> str:
        return self._tool("get_table_info", company_name=company_name, table_name=table_name)

    def sql_query(self, company_name: str, table_name: str, query: str) -> str:
        return self._tool("sql_query", company_name=company_name, table_name=table_name, query=query)

    def calculator(self, expression: str) -> str:
        return self._tool("calculator", expression=expression)

    def submit_answer(self, answer: str) -> str:
        return self._tool("submit_answer", answer=answer)


def training_env(snapshot, config) -> TrainingEnv:
    """The training environment a `TrainConfig` describes (its `data` aliasing and listing options, its `env`)."""
    return TrainingEnv(snapshot, table_alias_prob=config.data.table_alias_prob,
                       short_listing_prob=config.data.short_listing_prob,
                       column_alias_prob=config.data.column_alias_prob,
                       description_chars=config.env.description_chars)


def columns_to_real(query: str, renames: dict[str, str]) -> str:
    """A query as the agent wrote it (column aliases, bare or double-quoted) -> the query the real table runs. A
    real column name the episode renamed (`"2024"` shown as `fiscal_2024`) becomes an unknown column: it was never
    shown, so writing it is a memorised name, not a copied one."""
    to_real = {alias.lower(): real for real, alias in renames.items()}
    hidden = {real.lower(): real for real in renames}
    quoted = "|".join(re.escape(name) for name in sorted([*to_real, *hidden], key=len, reverse=True))
    bare = "|".join(re.escape(alias) for alias in sorted(to_real, key=len, reverse=True))
    pattern = re.compile(rf'"(?:{quoted})"|(?<![A-Za-z0-9_"])(?:{bare})(?![A-Za-z0-9_"])', re.IGNORECASE)

    def replace(match: re.Match) -> str:
        name = match.group(0).strip('"').lower()
        if match.group(0).startswith('"') and name in hidden:
            return '"' + hidden[name] + UNALIASED_SUFFIX + '"'
        return '"' + to_real[name] + '"'

    return pattern.sub(replace, query)


def columns_to_alias(text: str, renames: dict[str, str], result: bool) -> str:
    """A query's output with the real column names shown as the episode's aliases: the keys of a result's rows
    (never a cell value), or the quoted names of an error (its column list, the query it echoes)."""
    if result:
        keys = re.compile(rf'"({"|".join(re.escape(r) for r in renames)})"(?=\s*:)')
        return keys.sub(lambda m: json.dumps(renames[m.group(1)]), text)
    lower = {real.lower(): alias for real, alias in renames.items()}
    names = sorted(renames, key=len, reverse=True)
    pattern = re.compile(rf'"({"|".join(re.escape(n) for n in names)})({re.escape(UNALIASED_SUFFIX)})?"', re.IGNORECASE)

    def replace(match: re.Match) -> str:
        if match.group(2):  # a real name the agent wrote, shown as it wrote it
            return f'"{match.group(1)}"'
        return quote_column(lower[match.group(1).lower()])

    return pattern.sub(replace, text)


def _task_tables(task: dict[str, Any]) -> list[str]:
    """The tables a task's gold answer reads (`gold_tables`, a JSON list in a task row)."""
    tables = task.get("gold_tables") or []
    if isinstance(tables, str):
        tables = json.loads(tables)
    return [str(name) for name in tables]


TOOLS = ("get_descriptions", "get_table_info", "sql_query", "calculator", "submit_answer")
for _tool_name in TOOLS:
    getattr(TrainingEnv, _tool_name).__doc__ = getattr(FinQAEnv, _tool_name).__doc__
