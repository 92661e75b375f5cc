"""Tests for rl_assets.grading (table-driven)."""

from __future__ import annotations

import math
import random

import pytest

from rl_assets.grading import (
    Grade,
    ParsedNumber,
    extract_answer,
    grade,
    parse_answer,
    parse_number,
)

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
    ("dollar_thousands", "$61,307", P(61307.0, 61307.0, False, 1.0)),
    ("dollar_space", "$ 40678", P(40678.0, 40678.0, False, 1.0)),
    ("parens_negative", "(1,234)", P(-1234.0, -1234.0, False, 1.0)),
    ("dollar_parens_negative", "$(1,234)", P(-1234.0, -1234.0, False, 1.0)),
    ("parens_dollar_negative", "($1,234)", P(-1234.0, -1234.0, False, 1.0)),
    ("negative_percent", "-3.4%", P(-3.4, -3.4, True, 1.0)),
    ("percent_space", "3.4 %", P(3.4, 3.4, True, 1.0)),
    ("percent_word", "12.5 percent", P(12.5, 12.5, True, 1.0)),
    ("pct_word", "7 pct", P(7.0, 7.0, True, 1.0)),
    ("latex_percent", r"3.5\%", P(3.5, 3.5, True, 1.0)),
    ("trailing_unit_word", "8.1 years", P(8.1, 8.1, False, 1.0)),
    ("million", "1.2 million", P(1.2e6, 1.2, False, 1e6)),
    ("dollar_billion", "$1.2 billion", P(1.2e9, 1.2, False, 1e9)),
    ("bn_glued", "$3.5bn", P(3.5e9, 3.5, False, 1e9)),
    ("thousand", "2 thousand", P(2000.0, 2.0, False, 1e3)),
    ("m_glued", "$5M", P(5e6, 5.0, False, 1e6)),
    ("usd_prefix", "USD 1,000", P(1000.0, 1000.0, False, 1.0)),
    ("unicode_minus", "\u22125", P(-5.0, -5.0, False, 1.0)),
    ("minus_before_dollar", "-$5", P(-5.0, -5.0, False, 1.0)),
    ("minus_after_dollar", "$-5", P(-5.0, -5.0, False, 1.0)),
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
    ("zero_tiny", "0.0000001", 0.0, {}, True, "match"),
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
    # ratio gold
    ("ratio_plain", "0.9379", 0.9379, {"gold_unit": "ratio"}, True, "match"),
    ("ratio_as_percent", "93.8%", 0.9379, {"gold_unit": "ratio"}, True, "match"),
    ("ratio_as_percent_points", "93.79", 0.9379, {"gold_unit": "ratio"}, True, "match"),
    ("ratio_wrong", "95%", 0.9379, {"gold_unit": "ratio"}, False, "wrong_value"),
    # number gold: no x100 / /100 leniency
    ("number_no_pct_conversion", "0.123", 12.3, {}, False, "wrong_value"),
    ("number_percent_sign_ok", "24.1%", 24.1, {"gold_scale": "percent"}, True, "match"),
    # scale words
    ("scale_bare", "-12.6", -12.6, {"gold_scale": "million"}, True, "match"),
    ("scale_word", "-12.6 million", -12.6, {"gold_scale": "million"}, True, "match"),
    ("scale_full_number", "-12,600,000", -12.6, {"gold_scale": "million"}, True, "match"),
    ("scale_word_no_gold_scale", "$3.5bn", 3.5, {}, True, "match"),
    ("scale_full_no_gold_scale", "3,500,000,000", 3.5, {}, False, "wrong_value"),
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


# --------------------------------------------------------------------------
# Properties and fuzzing
# --------------------------------------------------------------------------


def _random_gold(rng: random.Random) -> float:
    magnitude = 10 ** rng.uniform(-3, 12)
    value = rng.choice([-1, 1]) * magnitude
    return round(value, rng.randint(0, 6)) or 1.0


def test_property_exact_string_matches_and_five_percent_off_does_not():
    rng = random.Random(1234)
    for _ in range(500):
        g = _random_gold(rng)
        assert grade(str(g), g).correct, g
        off = grade(str(g * 1.05), g)
        assert not off.correct, g
        assert off.reason == "wrong_value", g
        for unit in ("percent", "ratio"):
            assert grade(str(g), g, gold_unit=unit).correct, (g, unit)


_FUZZ_ALPHABET = (
    "0123456789" * 3 + ".,;:()[]{}%$-+\u2212\u2014 \n\t\\eEkKmMbBtT"
    + "abcdefghijklmnopqrstuvwxyz" + "\u00a0\u20ac\u00a3\u00e9\u4e00"
)
_FUZZ_PIECES = [r"\boxed{", "}", "FINAL ANSWER:", "million", "percent", "1e999",
                "9" * 400, "(", ")", "2019:", "n/a", r"\text{", r"\%"]


def test_fuzz_never_raises():
    rng = random.Random(99)
    for _ in range(1500):
        parts = []
        for _ in range(rng.randint(0, 12)):
            if rng.random() < 0.2:
                parts.append(rng.choice(_FUZZ_PIECES))
            else:
                parts.append("".join(rng.choice(_FUZZ_ALPHABET)
                                     for _ in range(rng.randint(1, 8))))
        text = "".join(parts)
        gold = rng.choice([0.0, 1.5, -12.6, 1e9, [1.0, 2.0], float("nan")])
        unit = rng.choice(["number", "percent", "ratio", "bogus"])
        scale = rng.choice([None, "", "million", "percent", "weird"])
        result = grade(text, gold, gold_unit=unit, gold_scale=scale)
        assert isinstance(result, Grade)
        assert isinstance(result.reason, str) and result.reason
        if result.predicted is not None:
            assert all(math.isfinite(v) for v in result.predicted)
        extracted = extract_answer(text)
        assert extracted is None or isinstance(extracted, str)
        for p in parse_answer(text):
            assert math.isfinite(p.value) and math.isfinite(p.bare)
