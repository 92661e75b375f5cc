"""rl_assets.programs: the one interpreter of FinQA programs and TAT-QA derivations, used by the raw
loaders (value, numbers, result kind) and by the oracle (the same program through the calculator)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rl_assets import programs
from rl_assets.calculator import evaluate as calculate

REAL_RAW = Path(__file__).resolve().parents[1] / "data" / "raw"


# ----------------------------------------------------------------------------- FinQA programs


@pytest.mark.parametrize("program, ops, value", [
    ("subtract(40678, 2526), divide(#0, 40678)", "subtract,divide", (40678 - 2526) / 40678),
    ("divide(5, const_100), multiply(#0, const_m1)", "divide,multiply", -0.05),
    ("add(1.5%, 2), exp(#0, 2)", "add,exp", 2.015 ** 2),
    ("subtract(1234.5, -5)", "subtract", 1239.5),
    ("divide(1, 0)", "divide", None),
    ("greater(7.0, 5.4)", "greater", None),
    ("table_average(operating margin, none), table_max(operating margin, none), subtract(#1, #0)",
     "table_average,table_max,subtract", None),
])
def test_finqa_program_values(program: str, ops: str, value: float | None) -> None:
    parsed = programs.parse_finqa_program(program)
    assert ",".join(parsed.ops) == ops
    assert parsed.evaluate() == (pytest.approx(value) if value is not None else None)


@pytest.mark.parametrize("program", [
    "subtract(40678, 2526", "", "foo(1, 2)", "add(1, #1)", "add(1, revenue)", "add(1, 2) add(3, 4)",
    "add(1)", "divide(#0, 2)", "table_sum(#0, none)",
])
def test_finqa_program_parser_rejects(program: str) -> None:
    with pytest.raises(programs.ProgramError):
        programs.parse_finqa_program(program)


def test_finqa_program_numbers_and_positions() -> None:
    parsed = programs.parse_finqa_program("add(3144, 3160), divide(#0, const_2), multiply(#1, 15%), divide(#2, 4)")
    numbers = [(n.text, n.magnitude, n.position, n.is_constant, n.is_percent) for n in parsed.numbers()]
    assert numbers == [
        ("3144", 3144.0, "term", False, False), ("3160", 3160.0, "term", False, False),
        ("const_2", 2.0, "divisor", True, False), ("15%", 15.0, "factor", False, True), ("4", 4.0, "divisor", False, False),
    ]


@pytest.mark.parametrize("program, kind", [
    ("divide(14.9, 546.5)", "fraction"),  # what percent of ... (a ratio)
    ("subtract(752707, 593356), divide(#0, 593356)", "fraction"),  # percentage change as a fraction
    ("divide(60, 243), multiply(#0, const_100)", "percent"),  # already in percent points
    ("add(221, 209), divide(#0, const_2)", "amount"),  # an average
    ("multiply(705292, 53.53), divide(#0, const_1000000)", "amount"),  # a change of unit
    ("subtract(57.3, 59.7)", "amount"),
    ("subtract(5%, 3%)", "fraction"),  # FinQA reads 5% as 0.05
    ("subtract(178.93, const_100), divide(#0, const_100), subtract(111.99, const_100), divide(#2, const_100), "
     "subtract(#1, #3)", "fraction"),
    ("divide(100, 110), subtract(const_1, #0)", "fraction"),
    ("divide(1200, 25%)", "amount"),
    ("greater(1, 2)", None),
])
def test_finqa_result_kind(program: str, kind: str | None) -> None:
    assert programs.parse_finqa_program(program).result_kind() == kind


def test_finqa_steps_through_the_calculator_equal_the_evaluation_with_replaced_numbers() -> None:
    parsed = programs.parse_finqa_program("subtract(40678, 2526), divide(#0, 40678), multiply(#1, 1.5%)")
    fetched = {40678.0: 40000.0, 2526.0: 2500.0, 1.5: 2.0}  # e.g. values fetched through the tools
    resolve = lambda n: fetched.get(n.magnitude)  # noqa: E731
    results: list[str] = []
    for i in range(len(parsed.steps)):
        results.append(repr(calculate(parsed.step_expression(i, results, resolve))))
    assert float(results[-1]) == pytest.approx((40000 - 2500) / 40000 * 0.02)
    assert parsed.evaluate(resolve) == pytest.approx(float(results[-1]))


# ----------------------------------------------------------------------------- TAT-QA derivations


@pytest.mark.parametrize("expr, scale, value", [
    ("(1,452.4 - 1,146.2) / 1,146.2", "percent", (1452.4 - 1146.2) / 1146.2),
    ("(3+5)/2", "", 4.0),
    ("[(166+178)/2] - [(57+44)/2]", "", 121.5),
    ("($166.3-$513.3)/$513.3", "", (166.3 - 513.3) / 513.3),
    ("$ 90,963-$ 84,886", "thousand", 90963 - 84886),
    ("$(290.2 + 239.6 + 190.4)", "million", 720.2),
    ("\u22121.9\u2212(\u22122.2)", "", 0.3),
    ("(2.7%+2.0%+1.0%)/3", "percent", 1.9),
    ("(1-15%)*($2.2/15%) ", "billion", 0.85 * 2.2 / 0.15),
    ("1,027/11%", "", 9336.3636),
    ("-114 - (71)", "million", -43.0),
    ("60.3 million + 32,137 thousand ", "thousand", 92437.0),
    ("08 + 1", "", 9.0),
])
def test_tatqa_derivation_values(expr: str, scale: str, value: float) -> None:
    assert programs.evaluate_derivation(expr, scale) == pytest.approx(value, rel=1e-4)


@pytest.mark.parametrize("expr", ["foo bar", "", "1 +", "__import__('os')", "2 ** 3", "1/0", "(1, 2)", "(1 + 2"])
def test_tatqa_derivation_rejects(expr: str) -> None:
    with pytest.raises(programs.ProgramError):
        programs.evaluate_derivation(expr)


def test_tatqa_derivation_numbers_and_positions() -> None:
    parsed = programs.parse_derivation("($ 1,452.4 + 1,146.2) / 2 * 100 - (13)", "")
    assert [(n.text, n.magnitude, n.position) for n in parsed.numbers()] == [
        ("$ 1,452.4", 1452.4, "term"), ("1,146.2", 1146.2, "term"), ("2", 2.0, "divisor"),
        ("100", 100.0, "factor"), ("13", 13.0, "term"),
    ]


@pytest.mark.parametrize("expr, scale", [
    ("$ 90,963-$ 84,886", ""),  # dollar signs the calculator must not see in a substituted expression
    ("-114 - (71)", "million"),  # an accounting negative is a negative, also to the calculator
    ("(2.7%+2.0%)/2 - 1%", "percent"),
    ("(1-15%)*($2.2/15%)", "billion"),
    ("60.3 million + 32,137 thousand", "thousand"),
])
def test_tatqa_derivation_through_the_calculator_with_replaced_numbers(expr: str, scale: str) -> None:
    parsed = programs.parse_derivation(expr, scale)
    resolve = lambda n: n.magnitude * 1.5  # noqa: E731 - every number replaced by another value
    text = parsed.to_calculator(resolve)
    assert "$" not in text and "%" not in text
    assert calculate(text) == pytest.approx(parsed.evaluate(resolve))
    assert calculate(parsed.to_calculator()) == pytest.approx(parsed.evaluate())


# ----------------------------------------------------------------------------- the real data


@pytest.mark.skipif(not REAL_RAW.is_dir(), reason="data/raw not present")
def test_every_real_program_renders_to_calculator_arithmetic_with_the_same_value() -> None:
    finqa = [json.loads(line) for line in (REAL_RAW / "finqa" / "finqa_examples.jsonl").read_text().splitlines()]
    checked = 0
    for record in finqa:
        parsed = programs.parse_finqa_program(record["program"])
        value = parsed.evaluate()
        if value is None:
            continue
        results: list[str] = []
        for i in range(len(parsed.steps)):
            results.append(repr(calculate(parsed.step_expression(i, results))))
        assert float(results[-1]) == pytest.approx(value, rel=1e-9, abs=1e-12), record["program"]
        checked += 1
    docs = json.loads((REAL_RAW / "tatqa" / "tatqa_dataset_dev.json").read_text())
    for doc in docs:
        for q in doc["questions"]:
            if q["answer_type"] == "arithmetic":
                parsed = programs.parse_derivation(q["derivation"], q["scale"])
                assert calculate(parsed.to_calculator()) == pytest.approx(parsed.evaluate(), rel=1e-9), q["derivation"]
                checked += 1
    assert checked > 1500
