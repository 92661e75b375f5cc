"""Tests for rl_assets.grading and rl_assets.numbers (table-driven).

The grading rules are tested three ways: every row of the example table in docs/environment.md
(both modes), the reference environment's own reward cases (parity), and generated answers whose
correct verdict follows from the rules (properties and fuzzing check values, not only types).
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest

from rl_assets.grading import (
    GRADING_MODES,
    Grade,
    ParsedNumber,
    extract_answer,
    grade,
    parse_answer,
    parse_number,
)
from rl_assets.numbers import parse_exact

DOCS = Path(__file__).resolve().parents[1] / "docs" / "environment.md"

# --------------------------------------------------------------------------
# extract_answer
# --------------------------------------------------------------------------

EXTRACT_CASES = [
    ("boxed_simple", r"The answer is \boxed{42}.", "42"),
    ("boxed_nested", r"So \boxed{\frac{1}{2}} it is", r"\frac{1}{2}"),
    ("boxed_text_nested", r"\boxed{\$1.2 \text{ million}}", r"\$1.2 \text{ million}"),
    ("boxed_multiple_last_wins", r"First \boxed{1} then \boxed{2}", "2"),
    ("boxed_unclosed_last_skipped", r"\boxed{7} and later \boxed{8", "7"),
    ("boxed_escaped_braces", r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
    ("boxed_beats_final_answer", "FINAL ANSWER: 3\n\\boxed{4}", "4"),
    ("final_answer_upper", "Reasoning...\nFINAL ANSWER: 12.5%", "12.5%"),
    ("final_answer_lower", "final answer: $61,307", "$61,307"),
    ("final_answer_mixed_case_eol", "Final Answer: 5.0\nThanks!", "5.0"),
    ("final_answer_last", "FINAL ANSWER: 1\nwait\nFINAL ANSWER: 2", "2"),
    ("final_answer_markdown", "**Final Answer:** 93.8%", "93.8%"),
    ("final_answer_next_line", "FINAL ANSWER:\n\n  -4.2  \n", "-4.2"),
    ("final_answer_empty", "FINAL ANSWER:   ", ""),
    ("none_plain_text", "The revenue was 5 million.", None),
    ("none_empty", "", None),
    ("none_only_unclosed_boxed", r"\boxed{5", None),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in EXTRACT_CASES],
                         ids=[c[0] for c in EXTRACT_CASES])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


# --------------------------------------------------------------------------
# parse_number
# --------------------------------------------------------------------------

P = ParsedNumber
PARSE_NUMBER_CASES = [
    ("dollar_thousands", "$61,307", P(61307.0, 61307.0, False, 1.0, True)),
    ("dollar_space", "$ 40678", P(40678.0, 40678.0, False, 1.0, True)),
    ("parens_negative", "(1,234)", P(-1234.0, -1234.0, False, 1.0)),
    ("dollar_parens_negative", "$(1,234)", P(-1234.0, -1234.0, False, 1.0, True)),
    ("parens_dollar_negative", "($1,234)", P(-1234.0, -1234.0, False, 1.0, True)),
    ("negative_percent", "-3.4%", P(-3.4, -3.4, True, 1.0)),
    ("percent_space", "3.4 %", P(3.4, 3.4, True, 1.0)),
    ("percent_word", "12.5 percent", P(12.5, 12.5, True, 1.0)),
    ("pct_word", "7 pct", P(7.0, 7.0, True, 1.0)),
    ("latex_percent", r"3.5\%", P(3.5, 3.5, True, 1.0)),
    ("trailing_unit_word", "8.1 years", P(8.1, 8.1, False, 1.0)),
    ("million", "1.2 million", P(1.2e6, 1.2, False, 1e6)),
    ("dollar_billion", "$1.2 billion", P(1.2e9, 1.2, False, 1e9, True)),
    ("bn_glued", "$3.5bn", P(3.5e9, 3.5, False, 1e9, True)),
    ("thousand", "2 thousand", P(2000.0, 2.0, False, 1e3)),
    ("m_glued", "$5M", P(5e6, 5.0, False, 1e6, True)),
    ("usd_prefix", "USD 1,000", P(1000.0, 1000.0, False, 1.0, True)),
    ("unicode_minus", "\u22125", P(-5.0, -5.0, False, 1.0)),
    ("minus_before_dollar", "-$5", P(-5.0, -5.0, False, 1.0, True)),
    ("minus_after_dollar", "$-5", P(-5.0, -5.0, False, 1.0, True)),
    ("scientific", "1e3", P(1000.0, 1000.0, False, 1.0)),
    ("leading_dot", ".5", P(0.5, 0.5, False, 1.0)),
    ("approximately", "approximately 93.8%", P(93.8, 93.8, True, 1.0)),
    ("sentence_period", "It was 5.", P(5.0, 5.0, False, 1.0)),
    ("big_with_decimals", "1,234,567.89", P(1234567.89, 1234567.89, False, 1.0)),
    ("first_of_many", "5 and 6", P(5.0, 5.0, False, 1.0)),
    ("em_dash", "\u2014", None),
    ("hyphen", "-", None),
    ("empty", "", None),
    ("n_a", "n/a", None),
    ("words_only", "not available", None),
    ("overflow", "1e999", None),
    ("currency_flag", "$5", P(5.0, 5.0, False, 1.0, True)),
    ("math_delimiters_not_currency", "$0.233$", P(0.233, 0.233, False, 1.0, False)),
    ("latex_display_math", r"\[ 12.5\% \]", P(12.5, 12.5, True, 1.0, False)),
    ("fraction_off_by_default", "233/1000", P(233.0, 233.0, False, 1.0)),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in PARSE_NUMBER_CASES],
                         ids=[c[0] for c in PARSE_NUMBER_CASES])
def test_parse_number(text, expected):
    got = parse_number(text)
    if expected is None:
        assert got is None
        return
    assert got is not None
    assert got.value == pytest.approx(expected.value)
    assert got.bare == pytest.approx(expected.bare)
    assert got.is_percent is expected.is_percent
    assert got.scale == expected.scale
    assert got.currency is expected.currency


# --------------------------------------------------------------------------
# parse_answer
# --------------------------------------------------------------------------

PARSE_ANSWER_CASES = [
    ("comma_space_list", "12.5, 13.1", [12.5, 13.1]),
    ("and_list", "12.5 and 13.1", [12.5, 13.1]),
    ("bracket_list", "[1, 2]", [1.0, 2.0]),
    ("bracket_list_no_space", "[1,2]", [1.0, 2.0]),
    ("year_labels", "2019: 5.0; 2018: 4.1", [5.0, 4.1]),
    ("year_labels_compact", "2019:5,2018:4", [5.0, 4.0]),
    ("thousands_is_one", "1,234", [1234.0]),
    ("comma_space_is_two", "1, 234", [1.0, 234.0]),
    ("year_not_label_kept", "5.0 in 2019", [5.0, 2019.0]),
    ("hyphen_range", "2018-2019", [2018.0, 2019.0]),
    ("mixed_units", "$1.2 million and 3.4%", [1.2e6, 3.4]),
    ("negatives_list", "(1,234), -5", [-1234.0, -5.0]),
    ("glued_to_letters_skipped", "Q4 revenue 10", [10.0]),
    ("none", "no numbers here", []),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in PARSE_ANSWER_CASES],
                         ids=[c[0] for c in PARSE_ANSWER_CASES])
def test_parse_answer(text, expected):
    assert [p.value for p in parse_answer(text)] == pytest.approx(expected)


FRACTION_CASES = [
    ("fraction", "233/1000", [0.233]),
    ("negative_fraction", "-1/2", [-0.5]),
    ("fraction_percent", "1/2%", [0.5]),
    ("fraction_in_text", "the ratio is 3/4.", [0.75]),
    ("zero_denominator", "1/0", []),
    ("chain_is_not_a_fraction", "1/2/3", [1.0, 2.0, 3.0]),
    ("date_is_not_a_fraction", "2/16/2022", [2.0, 16.0, 2022.0]),
    ("spaced_slash_is_two_numbers", "3 / 4", [3.0, 4.0]),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in FRACTION_CASES], ids=[c[0] for c in FRACTION_CASES])
def test_fractions_are_read_in_answers(text, expected):
    assert [p.value for p in parse_answer(text, fractions=True)] == pytest.approx(expected)


EXACT_CASES = [
    ("plain", "5", 5.0),
    ("padded", "  -4.2 ", -4.2),
    ("currency_parens", "$(1,234)", -1234.0),
    ("math_delimiters", "$0.233$", 0.233),
    ("percent", "6.28%", 6.28),
    ("fraction", "233/1000", 0.233),
    ("scale_word", "5 million", 5e6),
    ("leading_word", "about 5", None),
    ("trailing_word", "5 apples", None),
    ("two_numbers", "5 and 6", None),
    ("unclosed_paren", "(5", None),
    ("empty", "", None),
    ("not_a_string", None, None),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in EXACT_CASES], ids=[c[0] for c in EXACT_CASES])
def test_parse_exact_needs_the_whole_text_to_be_one_number(text, expected):
    got = parse_exact(text)
    assert (got.value if got else None) == (pytest.approx(expected) if expected is not None else None)


# --------------------------------------------------------------------------
# grade
# --------------------------------------------------------------------------

# (id, answer, gold, kwargs, correct, reason)
GRADE_CASES = [
    # plain numbers
    ("exact", "61307", 61307.0, {}, True, "match"),
    ("dollar_thousands", "$61,307", 61307.0, {}, True, "match"),
    ("boxed_in_answer", r"\boxed{61,307}", 61307.0, {}, True, "match"),
    ("final_answer_in_answer", "FINAL ANSWER: 61307", 61307.0, {}, True, "match"),
    # tolerance edges (1% relative)
    ("tol_inside_above", "100.99", 100.0, {}, True, "match"),
    ("tol_inside_below", "99.01", 100.0, {}, True, "match"),
    ("tol_outside_above", "101.01", 100.0, {}, False, "wrong_value"),
    ("tol_outside_below", "98.99", 100.0, {}, False, "wrong_value"),
    ("tol_custom_tight", "100.5", 100.0, {"rel_tol": 0.001}, False, "wrong_value"),
    # zero gold uses abs_tol
    ("zero_exact", "0", 0.0, {}, True, "match"),
    ("zero_tiny", "0.0000000001", 0.0, {}, True, "match"),
    ("zero_small_but_not_noise", "0.0000001", 0.0, {}, False, "wrong_value"),
    ("tiny_gold_keeps_relative_tolerance", "0.000011", 0.00001, {}, False, "wrong_value"),
    ("zero_outside_abs", "0.01", 0.0, {}, False, "wrong_value"),
    ("zero_custom_abs", "0.01", 0.0, {"abs_tol": 0.05}, True, "match"),
    # negatives
    ("parens_negative", "(12.6)", -12.6, {}, True, "match"),
    ("parens_thousands_negative", "$(1,234)", -1234.0, {}, True, "match"),
    ("minus_negative", "-12.6", -12.6, {}, True, "match"),
    ("strict_sign_decrease", "12.6 decrease", -12.6, {}, False, "wrong_sign"),
    ("strict_sign_positive_gold", "-12.6", 12.6, {}, False, "wrong_sign"),
    ("strict_sign_percent_unit", "12.6%", -12.6, {"gold_unit": "percent"}, False, "wrong_sign"),
    # percent gold
    ("pct_with_sign", "12.3%", 12.3, {"gold_unit": "percent"}, True, "match"),
    ("pct_plain", "12.3", 12.3, {"gold_unit": "percent"}, True, "match"),
    ("pct_as_fraction", "0.123", 12.3, {"gold_unit": "percent"}, True, "match"),
    ("pct_wrong", "13.5%", 12.3, {"gold_unit": "percent"}, False, "wrong_value"),
    # a percent question whose program computes the fraction ("what percentage of revenue ...", 0.9379):
    # the gold is in percent points and a bare number may be the percent or the fraction
    ("percent_question_with_sign", "93.79%", 93.79, {"gold_unit": "percent"}, True, "match"),
    ("percent_question_bare_percent", "93.79", 93.79, {"gold_unit": "percent"}, True, "match"),
    ("percent_question_bare_fraction", "0.9379", 93.79, {"gold_unit": "percent"}, True, "match"),
    ("percent_question_wrong", "95%", 93.79, {"gold_unit": "percent"}, False, "wrong_value"),
    ("percent_question_hundredfold", "9379", 93.79, {"gold_unit": "percent"}, False, "wrong_unit"),
    # a true ratio ("the ratio of A to B", gold 5.01): the bare number as written, no percent reading
    ("ratio_plain", "5.01", 5.01, {"gold_unit": "ratio"}, True, "match"),
    ("ratio_within_tolerance", "5.014", 5.01416, {"gold_unit": "ratio"}, True, "match"),
    ("ratio_times_sign", "5.01x", 5.01, {"gold_unit": "ratio"}, True, "match"),
    ("ratio_times_word", "5.01 times", 5.01, {"gold_unit": "ratio"}, True, "match"),
    ("ratio_boxed", r"\boxed{5.01}", 5.01, {"gold_unit": "ratio"}, True, "match"),
    ("ratio_hundredfold_bare", "501", 5.01, {"gold_unit": "ratio"}, False, "wrong_unit"),
    ("ratio_hundredth_bare", "0.0501", 5.01, {"gold_unit": "ratio"}, False, "wrong_unit"),
    ("ratio_percent_sign", "5.01%", 5.01, {"gold_unit": "ratio"}, False, "wrong_unit"),
    ("ratio_hundredfold_percent", "501%", 5.01, {"gold_unit": "ratio"}, False, "wrong_unit"),
    ("ratio_percent_word", "501 percent", 5.01, {"gold_unit": "ratio"}, False, "wrong_unit"),
    ("ratio_below_one_as_percent", "66.2%", 0.6618, {"gold_unit": "ratio"}, False, "wrong_unit"),
    ("ratio_below_one_bare_percent", "66.18", 0.6618, {"gold_unit": "ratio"}, False, "wrong_unit"),
    ("ratio_money", "$5.01", 5.01, {"gold_unit": "ratio"}, False, "wrong_unit"),
    ("ratio_scale_word", "5.01 million", 5.01, {"gold_unit": "ratio"}, False, "wrong_unit"),
    ("ratio_sign", "-5.01", 5.01, {"gold_unit": "ratio"}, False, "wrong_sign"),
    ("ratio_negative", "-4.74", -4.7403, {"gold_unit": "ratio"}, True, "match"),
    ("ratio_wrong", "5.5", 5.01, {"gold_unit": "ratio"}, False, "wrong_value"),
    # a count asked "in millions" (shares outstanding, 224.33 million): a number in its scale, no x100 reading
    ("count_in_millions_bare", "224.3", 224.33, {"gold_scale": "million"}, True, "match"),
    ("count_in_millions_units", "224,330,000", 224.33, {"gold_scale": "million"}, True, "match"),
    ("count_in_millions_word", "224.33 million shares", 224.33, {"gold_scale": "million"}, True, "match"),
    ("count_in_millions_hundredfold", "22433", 224.33, {"gold_scale": "million"}, False, "wrong_unit"),
    ("count_in_millions_hundredth", "2.2433", 224.33, {"gold_scale": "million"}, False, "wrong_unit"),
    # number gold: no x100 / /100 leniency
    ("number_no_pct_conversion", "0.123", 12.3, {}, False, "wrong_unit"),
    ("number_percent_sign_ok", "24.1%", 24.1, {"gold_scale": "percent"}, True, "match"),
    # scale words
    ("scale_bare", "-12.6", -12.6, {"gold_scale": "million"}, True, "match"),
    ("scale_word", "-12.6 million", -12.6, {"gold_scale": "million"}, True, "match"),
    ("scale_full_number", "-12,600,000", -12.6, {"gold_scale": "million"}, True, "match"),
    ("scale_word_no_gold_scale", "$3.5bn", 3.5, {}, False, "wrong_unit"),
    ("scale_full_no_gold_scale", "3,500,000,000", 3.5, {}, False, "wrong_unit"),
    ("scale_thousand", "$45,000", 45.0, {"gold_scale": "thousand"}, True, "match"),
    ("scale_billion_word", "1.2 billion", 1.2e9, {}, True, "match"),
    ("scale_bad", "5", 5.0, {"gold_scale": "furlongs"}, False, "invalid_gold_scale"),
    # single gold, several numbers: last one is graded
    ("last_number_used", "from 4.1 in 2018 to 5.0", 5.0, {}, True, "match"),
    ("last_number_wrong", "5.0 then 4.1", 5.0, {}, False, "wrong_value"),
    # multi-value
    ("multi_in_order", "12.5, 13.1", [12.5, 13.1], {}, True, "match"),
    ("multi_permutation", "13.1 and 12.5", [12.5, 13.1], {}, True, "match_permutation"),
    ("multi_year_labels", "2019: 5.0; 2018: 4.1", [5.0, 4.1], {}, True, "match"),
    ("multi_wrong_count_short", "12.5", [12.5, 13.1], {}, False, "wrong_count"),
    ("multi_wrong_count_long", "1, 2, 3", [1.0, 2.0], {}, False, "wrong_count"),
    ("multi_wrong_value", "12.5, 14.0", [12.5, 13.1], {}, False, "wrong_value"),
    ("multi_percent", "[12%, 0.13]", [12.0, 13.0], {"gold_unit": "percent"}, True, "match"),
    # no answer / unparsable / invalid gold
    ("none_answer", None, 5.0, {}, False, "no_answer"),
    ("empty_answer", "", 5.0, {}, False, "no_answer"),
    ("blank_answer", "   ", 5.0, {}, False, "no_answer"),
    ("unparsable_text", "I don't know", 5.0, {}, False, "unparsable"),
    ("unparsable_dash", "\u2014", 5.0, {}, False, "unparsable"),
    ("gold_nan", "5", float("nan"), {}, False, "invalid_gold"),
    ("gold_inf", "5", float("inf"), {}, False, "invalid_gold"),
    ("gold_empty_list", "5", [], {}, False, "invalid_gold"),
    ("gold_bad_unit", "5", 5.0, {"gold_unit": "dollars"}, False, "invalid_gold_unit"),
]


@pytest.mark.parametrize("answer,gold,kwargs,correct,reason",
                         [c[1:] for c in GRADE_CASES],
                         ids=[c[0] for c in GRADE_CASES])
def test_grade(answer, gold, kwargs, correct, reason):
    result = grade(answer, gold, **kwargs)
    assert isinstance(result, Grade)
    assert result.correct is correct, result
    assert result.reason == reason, result


def test_grade_predicted_values():
    assert grade("$1.2 million", 1.2).predicted == [1.2e6]
    assert grade("12.5, 13.1", [12.5, 13.1]).predicted == [12.5, 13.1]
    assert grade("no idea", 1.0).predicted is None
    assert grade(None, 1.0).predicted is None


def test_unknown_grading_mode_is_refused():
    with pytest.raises(ValueError, match="grading mode"):
        grade("5", 5.0, mode="lenient")


# --------------------------------------------------------------------------
# The documented rules: every row of the table in docs/environment.md
# --------------------------------------------------------------------------


def _documented_examples() -> list[tuple]:
    text = DOCS.read_text()
    table = text.split("<!-- grading-examples")[1].split("<!-- /grading-examples -->")[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    examples = []
    for line in rows:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        answer, gold, unit, scale, strict, reference, rule = cells
        verdict = re.fullmatch(r"(accept|reject)(?: \((\w+)\))?", strict)
        assert verdict and reference in ("accept", "reject"), line
        examples.append((answer.strip("`"), json.loads(gold), unit, scale,
                         verdict.group(1) == "accept", verdict.group(2), reference == "accept", rule))
    return examples


DOCUMENTED = _documented_examples()


def test_the_documented_table_covers_what_each_mode_rejects():
    assert len(DOCUMENTED) >= 45
    strict = [e[4] for e in DOCUMENTED]
    assert strict.count(True) >= 20 and strict.count(False) >= 15
    differing = [e for e in DOCUMENTED if e[4] != e[6]]
    assert differing and all("differs" in e[7] for e in differing), "every difference says why"


@pytest.mark.parametrize("answer,gold,unit,scale,accept,reason,_reference,_rule", DOCUMENTED,
                         ids=[f"{e[0]}|{e[1]}|{e[2]}|{e[3]}" for e in DOCUMENTED])
def test_documented_strict_rule(answer, gold, unit, scale, accept, reason, _reference, _rule):
    result = grade(answer, gold, gold_unit=unit, gold_scale=scale)
    assert result.correct is accept, result
    expected_reason = reason or ("match" if accept else "wrong_value")
    assert result.reason == expected_reason, result


@pytest.mark.parametrize("answer,gold,unit,scale,_accept,_reason,reference,_rule", DOCUMENTED,
                         ids=[f"{e[0]}|{e[1]}|{e[2]}|{e[3]}" for e in DOCUMENTED])
def test_documented_reference_rule(answer, gold, unit, scale, _accept, _reason, reference, _rule):
    assert grade(answer, gold, gold_unit=unit, gold_scale=scale, mode="reference").correct is reference


# --------------------------------------------------------------------------
# Parity with the reference environment's reward tests
# --------------------------------------------------------------------------
# The cases of OpenEnv's tests/envs/test_finqa_environment.py that grade an answer against a ground
# truth (compute_reward), with the reference's expected reward. The ground truth is written as there;
# `_gold` turns it into this project's gold (value, unit, scale) the way the task marts do: a '%'
# makes a percent gold, a scale word after the box is the gold's scale.
REFERENCE_CASES = [
    # (answer, ground truth, reference keyword arguments, reference reward)
    ("6.118", "6.118", {}, 1.0),
    ("6.118", r"\boxed{6.118}", {}, 1.0),
    (r"\boxed{6.118}", "6.118", {}, 1.0),
    ("6.12", "6.118", {}, 1.0),
    ("6.1", "6.118", {}, 1.0),
    ("5.0", "6.118", {}, 0.0),
    ("100", "6.118", {}, 0.0),
    ("6.280%", r"\boxed{6.280\%}", {}, 1.0),
    (r"6.280\%", r"\boxed{6.280\%}", {}, 1.0),
    (r"\boxed{6.280\%}", r"\boxed{6.280\%}", {}, 1.0),
    ("6.28%", r"\boxed{6.280\%}", {}, 1.0),
    (r"\boxed{6.28%}", r"\boxed{6.280\%}", {}, 1.0),
    ("0.0628", r"\boxed{6.280\%}", {}, 1.0),
    ("-0.606%", r"\(\boxed{-0.606\%}\)", {}, 1.0),
    ("57.73", r"$\boxed{57.730}$", {}, 1.0),
    ("6.29%", r"\boxed{6.280\%}", {}, 1.0),
    (r"\boxed{6.29\%}", r"\boxed{6.280\%}", {}, 1.0),
    ("0.0629", r"\boxed{6.280\%}", {}, 1.0),
    ("6.30%", r"\boxed{6.280\%}", {}, 1.0),
    ("7.00%", r"\boxed{6.280\%}", {}, 0.0),
    ("7.28%", r"\boxed{6.280\%}", {}, 0.0),
    ("25.14%", r"\boxed{25.144\%}", {}, 1.0),
    ("25.144%", r"\boxed{25.144\%}", {}, 1.0),
    ("25.1%", r"\boxed{25.144\%}", {}, 1.0),
    ("-0.61%", r"\boxed{-0.606\%}", {}, 1.0),
    ("-0.606%", r"\boxed{-0.606\%}", {}, 1.0),
    ("0.232", r"\boxed{0.232}", {}, 1.0),
    ("0.233", r"\boxed{0.232}", {}, 1.0),
    (r"\boxed{0.233}", r"\boxed{0.232}", {}, 1.0),
    ("233/1000", r"\boxed{0.232}", {}, 1.0),
    ("$0.233$", r"\boxed{0.232}", {}, 1.0),
    ("0.235", r"\boxed{0.232}", {}, 0.0),
    ("0.321", r"\boxed{0.320}", {}, 1.0),
    ("321/1000", r"\boxed{0.320}", {}, 1.0),
    (r"\boxed{0.321}", r"\boxed{0.320}", {}, 1.0),
    ("0.046", r"\boxed{0.046}", {}, 1.0),
    ("0.0463", r"\boxed{0.046}", {}, 1.0),
    ("-77", r"\boxed{-77} million", {}, 1.0),
    (r"\boxed{-77}", r"\boxed{-77} million", {}, 1.0),
    ("(77)", r"\boxed{-77} million", {}, 1.0),
    ("1001", r"\boxed{1000}", {}, 1.0),
    ("1009", r"\boxed{1000}", {}, 0.0),
    ("1011", r"\boxed{1000}", {}, 0.0),
    ("1,234.56", r"\boxed{1234.56}", {}, 1.0),
    ("1234.56", r"\boxed{1,234.56}", {}, 1.0),
    (r"\boxed{1,234.56}", r"\boxed{1234.56}", {}, 1.0),
    ("0", r"\boxed{0}", {}, 1.0),
    ("0.0", r"\boxed{0}", {}, 1.0),
    ("4.5%", r"\boxed{4.500}", {}, 1.0),
    ("6.0%", r"\boxed{6.000}", {}, 1.0),
    ("6.28%", r"\boxed{6.28}", {}, 1.0),
    ("1/2", r"\boxed{0.5}", {}, 1.0),
    ("0.5", r"\boxed{1/2}", {}, 1.0),
    (r"\boxed{1/2}", r"\boxed{0.5}", {}, 1.0),
    (r"\boxed{0.5}", r"\boxed{1/2}", {}, 1.0),
    ("50%", r"\boxed{1/2}", {}, 1.0),
    ("(100)", r"\boxed{-100}", {}, 1.0),
    ("101", r"\boxed{100}", {}, 1.0),
    ("102", r"\boxed{100}", {}, 0.0),
    ("102", r"\boxed{100}", {"tolerance": 0.02}, 0.0),
    ("102", r"\boxed{100}", {"tolerance": 0.02, "max_absolute_diff": 3.0}, 1.0),
    ("0.501", r"\boxed{0.5}", {}, 1.0),
    ("0.506", r"\boxed{0.5}", {}, 0.0),
    ("100.01", r"\boxed{100}", {}, 1.0),
    ("100.5", r"\boxed{100}", {}, 1.0),
    ("2.0", r"\boxed{2.0}", {}, 1.0),
    ("2.001", r"\boxed{2.0}", {}, 1.0),
    ("1.999", r"\boxed{2.0}", {}, 1.0),
    ("1.23e-5", r"\boxed{0.0000123}", {}, 1.0),
    ("1e6", r"\boxed{1000000}", {}, 1.0),
    ("0.0000123", r"\boxed{1.23e-5}", {}, 1.0),
    (r"\boxed{1e6}", r"\boxed{1000000}", {}, 1.0),
    ("0.00123%", r"\boxed{1.23e-5}", {}, 1.0),
    ("1000000", r"\boxed{1000000}", {}, 1.0),
    ("1000000", r"\boxed{1,000,000}", {}, 1.0),
    ("1,000,000", r"\boxed{1000000}", {}, 1.0),
    ("1005000", r"\boxed{1000000}", {}, 0.0),
    ("1005000", r"\boxed{1000000}", {"max_absolute_diff": 10000}, 1.0),
    ("0.00001", r"\boxed{0.00001}", {}, 1.0),
    ("0.000011", r"\boxed{0.00001}", {}, 0.0),
    ("0.00001001", r"\boxed{0.00001}", {}, 1.0),
    ("  6.28%  ", r"\boxed{6.280\%}", {}, 1.0),
    ("100", r"\boxed{  100  }", {}, 1.0),
    ("25.14%", r"$$\boxed{25.144\%}$$", {}, 1.0),
    ("0.232", r"\[\boxed{0.232}\]", {}, 1.0),
    ("", r"\boxed{100}", {}, 0.0),
    ("100", "", {}, 0.0),
    ("abc", r"\boxed{100}", {}, 0.0),
    ("100", r"\boxed{abc}", {}, 0.0),
    ("6.28", r"\boxed{6.28\%}", {}, 0.0),
    ("1.5", r"\boxed{1.5} billion", {}, 1.0),
    ("$100", r"\boxed{100}", {}, 1.0),
    ("100", r"\boxed{$100}", {}, 1.0),
    (r"\boxed{$100}", r"\boxed{100}", {}, 1.0),
    ("$100.00", r"\boxed{100}", {}, 1.0),
    ("0.50", r"\boxed{0.5}", {}, 1.0),
    ("00.5", r"\boxed{0.5}", {}, 1.0),
    ("100%", r"\boxed{100\%}", {}, 1.0),
    ("99.9%", r"\boxed{100\%}", {}, 1.0),
    ("100.1%", r"\boxed{100\%}", {}, 1.0),
    ("10.5%", r"\boxed{10.5}", {}, 1.0),
    ("-2.5%", r"\boxed{-2.5}", {}, 1.0),
    ("0.933, 0.931, 0.930", r"\boxed{2022:\ 0.933,\; 2023:\ 0.930,\; 2024:\ 0.931}", {}, 1.0),
]
assert len({(a, t, tuple(sorted(k.items()))) for a, t, k, _ in REFERENCE_CASES}) == len(REFERENCE_CASES)

# Where strict grading gives another verdict than the reference, on purpose (docs/environment.md says why).
STRICT_DIFFERS_ON_PURPOSE = {
    ("6.28", r"\boxed{6.28\%}"): "a bare number for a percent gold may be the percent",
    ("4.5%", r"\boxed{4.500}"): "a '%' states a percent; a number gold is not one",
    ("6.0%", r"\boxed{6.000}"): "a '%' states a percent; a number gold is not one",
    ("6.28%", r"\boxed{6.28}"): "a '%' states a percent; a number gold is not one",
    ("10.5%", r"\boxed{10.5}"): "a '%' states a percent; a number gold is not one",
    ("-2.5%", r"\boxed{-2.5}"): "a '%' states a percent; a number gold is not one",
    ("1009", r"\boxed{1000}"): "relative tolerance only, no absolute cap",
    ("102", r"\boxed{100}"): "relative tolerance only, no absolute cap",  # with tolerance=0.02
    ("1005000", r"\boxed{1000000}"): "relative tolerance only, no absolute cap",
}


def _gold(ground_truth: str) -> tuple[object, str, str]:
    """(gold, gold_unit, gold_scale) of a reference ground-truth string."""
    boxes = re.findall(r"\\boxed\{([^}]*)\}", ground_truth)
    content = boxes[0] if boxes else ground_truth
    after = re.search(r"\}\s*(thousand|million|billion)", ground_truth)
    scale = after.group(1) if after else ""
    unit = "percent" if "%" in content else "number"
    numbers = [p.value for p in parse_answer(content, fractions=True)]
    if not numbers:
        return content, unit, scale  # not a number: the grader must say invalid_gold
    return (numbers[0] if len(numbers) == 1 else numbers), unit, scale


def _reference_kwargs(kwargs: dict) -> dict:
    return {{"tolerance": "rel_tol", "max_absolute_diff": "max_abs_diff"}[k]: v for k, v in kwargs.items()}


def _case_id(case) -> str:
    return f"{case[0]!r} vs {case[1]!r}" + (f" {case[2]}" if case[2] else "")


@pytest.mark.parametrize("answer,truth,kwargs,reward", REFERENCE_CASES, ids=[_case_id(c) for c in REFERENCE_CASES])
def test_reference_mode_gives_the_reference_reward(answer, truth, kwargs, reward):
    gold, unit, scale = _gold(truth)
    result = grade(answer, gold, gold_unit=unit, gold_scale=scale, mode="reference", **_reference_kwargs(kwargs))
    assert (1.0 if result.correct else 0.0) == reward, result


def test_strict_mode_differs_from_the_reference_only_where_documented():
    disagree = []
    for answer, truth, kwargs, reward in REFERENCE_CASES:
        gold, unit, scale = _gold(truth)
        kw = {"rel_tol": kwargs["tolerance"]} if "tolerance" in kwargs else {}
        strict = grade(answer, gold, gold_unit=unit, gold_scale=scale, **kw)
        if (1.0 if strict.correct else 0.0) != reward:
            disagree.append((answer, truth))
    assert sorted(disagree) == sorted(STRICT_DIFFERS_ON_PURPOSE)
    agree = len(REFERENCE_CASES) - len(disagree)
    print(f"strict grading agrees with the reference on {agree} of {len(REFERENCE_CASES)} cases")


# --------------------------------------------------------------------------
# Properties: generated answers whose verdict follows from the rules
# --------------------------------------------------------------------------

SCALE_WORDS = {"thousand": 1e3, "million": 1e6, "billion": 1e9}


def _random_gold(rng: random.Random) -> float:
    magnitude = 10 ** rng.uniform(-3, 9)
    value = rng.choice([-1, 1]) * magnitude
    return round(value, rng.randint(0, 6)) or 1.0


def _amount(x: float) -> str:
    return f"{x:.12g}"


def _accepted_and_rejected(g: float, unit: str, scale: str) -> tuple[list[str], list[str]]:
    """Answers the rules accept for gold g, and answers they reject because of what they state."""
    if unit == "percent":
        ok = [f"{_amount(g)}%", _amount(g), _amount(g / 100), f"{_amount(g)} percent", rf"\boxed{{{_amount(g)}\%}}"]
        bad = [f"{_amount(g * 100)}%", f"{_amount(g / 100)}%", _amount(g * 100), f"{_amount(g)} million",
               f"${_amount(g)}"]
    elif unit == "ratio":  # a true ratio: only the number as written (or with an `x`)
        ok = [_amount(g), f"{_amount(g)}x", rf"\boxed{{{_amount(g)}}}"]
        bad = [f"{_amount(g)}%", f"{_amount(g * 100)}%", _amount(g * 100), _amount(g / 100),
               f"{_amount(g)} billion", f"${_amount(g)}"]
    else:
        m = SCALE_WORDS.get(scale, 1.0)
        ok = [_amount(g), f"${_amount(g)}", _amount(g * m), f"FINAL ANSWER: {_amount(g)}"]
        ok += [f"{_amount(g * m / w)} {word}" for word, w in SCALE_WORDS.items()]
        if g < 0:
            ok.append(f"({_amount(-g)})")
        bad = [f"{_amount(g)}%"]
        bad += [f"{_amount(g)} {word}" for word, w in SCALE_WORDS.items() if w != m]
        if m == 1.0:
            bad.append(_amount(g * 1e6))
    return ok, bad


def test_property_every_statement_of_the_gold_is_accepted_and_every_wrong_unit_rejected():
    rng = random.Random(1234)
    for _ in range(400):
        g = _random_gold(rng)
        unit = rng.choice(["number", "percent", "ratio"])
        scale = rng.choice(["", "thousand", "million", "billion"]) if unit == "number" else ""
        ok, bad = _accepted_and_rejected(g, unit, scale)
        for answer in ok:
            result = grade(answer, g, gold_unit=unit, gold_scale=scale)
            assert result.correct and result.reason == "match", (answer, g, unit, scale, result)
        for answer in bad:
            result = grade(answer, g, gold_unit=unit, gold_scale=scale)
            assert not result.correct and result.reason == "wrong_unit", (answer, g, unit, scale, result)
        off = grade(_amount(g * 1.05), g, gold_unit=unit, gold_scale=scale)
        assert not off.correct and off.reason == "wrong_value", (g, unit, scale, off)
        flipped = grade(_amount(-g), g, gold_unit=unit, gold_scale=scale)
        assert not flipped.correct and flipped.reason == "wrong_sign", (g, unit, scale, flipped)


def test_property_tolerance_is_relative_in_strict_mode_and_capped_in_reference_mode():
    rng = random.Random(7)
    for _ in range(300):
        g = rng.choice([-1, 1]) * 10 ** rng.uniform(3, 9)  # |g| >= 1000: 0.5% of it is more than 1.0
        near = g * (1 + rng.choice([-1, 1]) * 0.005)
        assert grade(_amount(near), g).correct
        assert not grade(_amount(near), g, mode="reference").correct
        assert grade(_amount(g + 0.5), g, mode="reference").correct
        far = g * (1 + rng.choice([-1, 1]) * 0.02)
        assert not grade(_amount(far), g).correct and not grade(_amount(far), g, mode="reference").correct


# --------------------------------------------------------------------------
# Fuzzing: arbitrary text never crashes the grader and the verdict follows the rules
# --------------------------------------------------------------------------

_FUZZ_ALPHABET = (
    "0123456789" * 3 + ".,;:()[]{}%$-+/\u2212\u2014 \n\t\\eEkKmMbBtT"
    + "abcdefghijklmnopqrstuvwxyz" + "\u00a0\u20ac\u00a3\u00e9\u4e00"
)
_FUZZ_PIECES = [r"\boxed{", "}", "FINAL ANSWER:", "million", "percent", "1e999", "$", "%", "233/1000",
                "9" * 400, "(", ")", "2019:", "n/a", r"\text{", r"\%", "30.5851", "0.305851", "-7.0", "27",
                "5.01", "501", "x"]


def _spec_correct(text: str, gold: float, unit: str, scale: str | None) -> bool:
    """The strict rule for one gold value, written in absolute terms (independent of grade's code)."""
    answer = extract_answer(text)
    numbers = parse_answer(text if answer is None else answer, fractions=True)
    if not numbers:
        return False
    p = numbers[-1]
    multiplier = SCALE_WORDS.get((scale or "").lower(), 1.0)
    gold_absolute = {"percent": gold / 100, "ratio": gold}.get(unit, gold * multiplier)
    if p.is_percent:
        meanings = [] if unit == "ratio" else [p.value / 100]  # a true ratio is never a percent
    elif p.scale != 1:
        meanings = [p.value] if unit == "number" else []
    elif unit == "number":
        meanings = [p.bare, p.bare * multiplier]
    elif p.currency:
        meanings = []
    else:  # a percent question: the percent or the fraction; a true ratio: the number as written
        meanings = [p.bare] if unit == "ratio" else [p.bare / 100, p.bare]
    absolute_per_gold_unit = {"percent": 0.01, "ratio": 1.0}.get(unit, multiplier)  # abs_tol is in the gold's terms
    tolerance = max(0.01 * abs(gold_absolute), 1e-9 * absolute_per_gold_unit)
    return any(abs(m - gold_absolute) <= tolerance * (1 + 1e-9) for m in meanings)


def test_fuzz_never_raises_and_grades_by_the_rules():
    rng = random.Random(99)
    checked = accepted = 0
    for _ in range(4000):
        parts = []
        for _ in range(rng.randint(0, 12)):
            if rng.random() < 0.3:
                parts.append(rng.choice(_FUZZ_PIECES))
            else:
                parts.append("".join(rng.choice(_FUZZ_ALPHABET) for _ in range(rng.randint(1, 8))))
        text = "".join(parts)
        gold = rng.choice([0.0, 1.5, -12.6, 1e9, 30.5851, 0.305851, -7.0, 27.0, 5.01, [1.0, 2.0], float("nan")])
        unit = rng.choice(["number", "percent", "ratio", "bogus"])
        scale = rng.choice([None, "", "million", "thousand", "weird"])
        for mode in GRADING_MODES:
            result = grade(text, gold, gold_unit=unit, gold_scale=scale, mode=mode)
            assert isinstance(result, Grade) and result.reason
            assert result.correct == (result.reason in ("match", "match_permutation")), result
            if result.predicted is not None:
                assert all(math.isfinite(v) for v in result.predicted)
        result = grade(text, gold, gold_unit=unit, gold_scale=scale)
        if isinstance(gold, float) and math.isfinite(gold) and unit != "bogus" and scale != "weird" and text.strip():
            answer = extract_answer(text)
            numbers = parse_answer(text if answer is None else answer, fractions=True)
            # the graded number is the answer's last one, with its value as written
            assert result.predicted == ([numbers[-1].value] if numbers else None), (text, result)
            assert result.correct == _spec_correct(text, gold, unit, scale), (text, gold, unit, scale, result)
            checked += 1
            accepted += result.correct
        extracted = extract_answer(text)
        assert extracted is None or isinstance(extracted, str)
        for p in parse_answer(text, fractions=True):
            assert math.isfinite(p.value) and math.isfinite(p.bare)
    assert checked > 1000 and accepted > 20  # the fuzz reaches both verdicts
