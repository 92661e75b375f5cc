"""Behaviour rates' paired differences: two policies compared over the tasks both played."""

from __future__ import annotations

import pytest

from rl_assets.evaluation.behaviour import behaviour_rates, paired_differences


def row(task_id: str, *, answered: bool, errors: int = 0, recovered: bool | None = None) -> dict:
    return {"task_id": task_id, "world_id": "acme", "answered": answered, "correct": False, "errors": errors,
            "recovered_after_error": recovered, "n_tool_calls": 1, "hallucinated_identifiers": 0,
            "inspected_schema_before_query": True, "tool_calls": [{"arguments": {"company_name": "acme"}}]}


def test_a_paired_difference_pairs_tasks_and_its_interval_follows_the_sample():
    tasks = [f"t{i}" for i in range(40)]
    before = [row(t, answered=False) for t in tasks]
    after = [row(t, answered=i % 4 != 0) for i, t in enumerate(tasks)]  # 30 of 40 now submit
    delta = paired_differences(after, before)
    assert delta["submitted"] == pytest.approx(0.75) and delta["submitted_tasks"] == 40
    low, high = delta["submitted_ci"]
    assert 0 < low < 0.75 < high <= 1  # excludes zero: 40 paired tasks support the difference
    assert delta["company_used"] == 0 and delta["company_used_ci"] == [0, 0]
    # only shared tasks are paired; a task played only by one side does not count
    assert paired_differences(after[:10] + [row("extra", answered=True)], before)["submitted_tasks"] == 10
    # a rate that applies to no shared task (recovery needs an error) has no difference
    assert paired_differences(after, before)["recovered_after_error"] is None
    # one task that flipped is no evidence: its interval reaches zero
    flip = paired_differences([row("t0", answered=True)] + before[1:], before)
    assert flip["submitted_ci"][0] == 0 and flip["submitted"] == pytest.approx(1 / 40)


def test_a_task_played_several_times_is_one_paired_value():
    before = [row("t0", answered=False), row("t1", answered=False)]
    after = [row("t0", answered=True), row("t0", answered=False), row("t1", answered=True)]
    delta = paired_differences(after, before)
    assert delta["submitted"] == pytest.approx((0.5 + 1.0) / 2) and delta["submitted_tasks"] == 2
    assert behaviour_rates(after)["submitted"] == pytest.approx(2 / 3)  # unpaired: over episodes
