"""Policies: the OpenAI-compatible policy against a real chat-completions server process on loopback (through
the official `openai` client), every way an endpoint can fail recorded as a failed episode, the router's
escalation and per-policy accounting, the hf policy over a real tiny model, and policy specs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from rl_assets.episodes import Episode
from rl_assets.evaluation.task_sets import load_task_set
from rl_assets.policies import GenerationSettings, PolicyError, load_policy
from rl_assets.policies.hf import model_version
from rl_assets.policies.router import escalation_signals

from child_processes import child_process

SERVER = Path(__file__).with_name("chat_server.py")
SETTINGS = GenerationSettings(max_turns=5, batch_size=4)


@pytest.fixture(scope="module")
def eval_tasks(snapshot_dir):
    return load_task_set(snapshot_dir, "single_table-synth-test")[:4]


@pytest.fixture(scope="module")
def chat_server(eval_tasks, tmp_path_factory):
    """A scripted chat-completions server in its own process; the solver knows the first two answers."""
    answers = tmp_path_factory.mktemp("chat") / "answers.json"
    answers.write_text(json.dumps({t["question"]: t["gold_answer_text"] for t in eval_tasks[:2]}))
    with child_process([sys.executable, str(SERVER), "--answers", str(answers)]) as server:  # ended whatever happens
        port = int(server.wait_for_line("PORT ", timeout_s=120).split()[1])
        yield f"http://127.0.0.1:{port}/v1"


def endpoint(model: str, base_url: str, **options):
    return load_policy(f"openai:{model}", openai_options={"base_url": base_url, "max_retries": 0, **options})


def test_an_endpoint_plays_episodes_with_tool_calls_through_the_real_environment(chat_server, snapshot_dir, eval_tasks):
    policy = endpoint("solver", chat_server, price_in_per_mtok=2.0, price_out_per_mtok=8.0)
    episodes = policy.run_episodes(eval_tasks, snapshot_dir, SETTINGS)
    assert [e.task_id for e in episodes] == [t["task_id"] for t in eval_tasks]
    assert [e.correct for e in episodes] == [True, True, False, False]  # the server knows two answers
    for e in episodes:
        assert e.stop_reason == "submitted" and e.turns == 4 and e.well_formed_turns == 4
        assert [c["tool"] for c in e.tool_calls] == ["get_descriptions", "get_table_info", "sql_query", "submit_answer"]
        assert e.rubric["listed_tables_before_query"] and e.rubric["inspected_schema_before_query"]
        assert e.tokens_in > 0 and e.tokens_out > 0
        assert e.cost_usd == pytest.approx((e.tokens_in * 2.0 + e.tokens_out * 8.0) / 1e6)
        assert e.extra["served_model"] == "scripted-solver"
        assert e.messages[0]["role"] == "system" and e.messages[-1]["role"] == "tool"
    assert episodes[2].answer == "0"
    assert policy.version == f"openai:solver@{chat_server}"


@pytest.mark.parametrize("model,stop_reason,error", [
    ("silent", "no_tool_call", None),
    ("garbage", "no_tool_call", None),
    ("bad-arguments", "max_turns", None),
    ("wrong-company", "max_turns", None),
    ("http-500", "policy_error", "InternalServerError"),
    ("not-json", "policy_error", "not a chat completion"),
    ("no-such-model", "policy_error", "NotFoundError"),
])
def test_every_endpoint_failure_is_a_failed_episode_with_its_reason(model, stop_reason, error, chat_server, snapshot_dir,
                                                                    eval_tasks):
    episodes = endpoint(model, chat_server).run_episodes(eval_tasks[:2], snapshot_dir, SETTINGS)
    for e in episodes:
        assert (e.correct, e.answer, e.stop_reason) == (False, None, stop_reason)
        assert (error is None and e.error is None) or error in e.error
    if model == "wrong-company":
        assert episodes[0].turns == SETTINGS.max_turns
        assert episodes[0].rubric["hallucinated_identifiers"] == SETTINGS.max_turns
    if model == "bad-arguments":  # malformed calls never reach the environment, but are counted
        assert episodes[0].tool_calls == [] and episodes[0].extra["call_outcomes"] == [False] * SETTINGS.max_turns
        assert episodes[0].well_formed_turns == 0


def test_an_unreachable_endpoint_is_a_failed_episode(snapshot_dir, eval_tasks):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (episode,) = endpoint("solver", f"http://127.0.0.1:{port}/v1", timeout_s=5).run_episodes(eval_tasks[:1], snapshot_dir)
    assert episode.stop_reason == "policy_error" and "APIConnectionError" in episode.error and not episode.correct


def test_an_endpoint_needs_a_key_or_a_base_url(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(PolicyError, match="OPENAI_API_KEY"):
        load_policy("openai:gpt-4o-mini")


def _episode(**fields) -> Episode:
    base = dict(task_id="t", policy="p", answer="12.5%", correct=False, reward=0.0, rubric={}, tool_calls=[],
                stop_reason="submitted")
    return Episode(**{**base, **fields})


@pytest.mark.parametrize("fields,signals", [
    ({}, []),
    ({"tool_calls": [{"ok": False}] * 3}, ["tool_errors_in_a_row"]),
    ({"tool_calls": [{"ok": False}, {"ok": True}, {"ok": False}, {"ok": False}]}, []),
    ({"extra": {"call_outcomes": [True, False, False, False]}}, ["tool_errors_in_a_row"]),
    ({"answer": None, "stop_reason": "max_turns"}, ["no_answer_by_step_limit"]),
    ({"answer": "I do not know"}, ["unparsable_answer"]),
    ({"answer": None, "stop_reason": "no_tool_call"}, ["unparsable_answer"]),
    ({"answer": None, "stop_reason": "policy_error", "error": "down"}, ["policy_error"]),
])
def test_escalation_signals_come_from_the_telemetry(fields, signals):
    assert escalation_signals(_episode(**fields)) == signals


def test_the_router_escalates_failing_episodes_and_accounts_per_policy(chat_server, snapshot_dir, eval_tasks):
    options = {"base_url": chat_server, "max_retries": 0, "price_in_per_mtok": 1.0, "price_out_per_mtok": 1.0}
    router = load_policy("router:openai:unparsable,oracle", openai_options=options)
    episodes = router.run_episodes(eval_tasks, snapshot_dir, SETTINGS)
    for e in episodes:
        info = e.extra["router"]
        assert info["escalated"] and info["signals"] == ["unparsable_answer"] and info["answered_by"] == "oracle"
        small, large = info["per_policy"]["openai:unparsable"], info["per_policy"]["oracle"]
        assert small["correct"] is False and large["correct"] is True and e.correct
        assert e.tokens_in == small["tokens_in"] > 0 and e.cost_usd == pytest.approx(small["cost_usd"])
    kept = load_policy("router:openai:solver,oracle", openai_options=options).run_episodes(eval_tasks, snapshot_dir, SETTINGS)
    assert not any(e.extra["router"]["escalated"] for e in kept)  # answers parse, no errors: the small one answers
    assert [e.correct for e in kept] == [True, True, False, False]
    assert set(kept[0].extra["router"]["per_policy"]) == {"openai:solver"}
    stalled = load_policy("router:openai:wrong-company,oracle", openai_options=options).run_episodes(
        eval_tasks[:1], snapshot_dir, SETTINGS)
    assert stalled[0].extra["router"]["signals"] == ["tool_errors_in_a_row", "no_answer_by_step_limit"]


# ------------------------------------------------------------------ hf policy over a real tiny model
@pytest.fixture(scope="module")
def tiny_model(snapshot_dir, tmp_path_factory):
    from rl_assets.policies.tiny import build_untrained_tiny_model

    return build_untrained_tiny_model(snapshot_dir, tmp_path_factory.mktemp("models"), config="tiny-test")


def test_the_untrained_tiny_model_is_built_once_and_deterministically(tiny_model, snapshot_dir, tmp_path):
    from rl_assets.policies.tiny import build_untrained_tiny_model

    assert build_untrained_tiny_model(snapshot_dir, tiny_model.parent, config="tiny-test") == tiny_model
    again = build_untrained_tiny_model(snapshot_dir, tmp_path, config="tiny-test")
    assert again.name == tiny_model.name and model_version(again) == model_version(tiny_model)
    assert json.loads((tiny_model / "prompt.json").read_text())["system_prompt"]


def test_the_hf_policy_plays_through_the_local_model_rollouts(tiny_model, snapshot_dir, eval_tasks):
    policy = load_policy("tiny-test-untrained", snapshot=snapshot_dir, artifact=tiny_model)
    assert policy.spec == f"hf:{tiny_model}" and policy.version == model_version(tiny_model)
    episodes = policy.run_episodes(eval_tasks * 2, snapshot_dir, GenerationSettings(max_turns=2, max_new_tokens=8, batch_size=8))
    assert len(episodes) == 8 and all(e.policy == "tiny-test-untrained" for e in episodes)
    assert [e.task_id for e in episodes] == [t["task_id"] for t in eval_tasks * 2]
    assert all(1 <= e.turns <= 2 and 0 < e.tokens_out <= 16 and e.model_seconds > 0 for e in episodes)
    assert all(0 < e.latency_s for e in episodes)
    assert not any(e.correct for e in episodes)  # an untrained model answers nothing right


def test_model_version_hashes_weights_and_config_and_run_lineage_is_read(tiny_model, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_model, run / "model")
    (run / "model" / "README.md").write_text("model card")
    assert model_version(run / "model") == model_version(tiny_model)  # the card is not the model
    (run / "lineage.json").write_text(json.dumps({"config_name": "tiny-local", "compute": {"estimated_usd": 1.25}}))
    policy = load_policy(f"hf:{run}")
    assert policy.model_dir == (run / "model").resolve() and policy.lineage()["compute"] == {"estimated_usd": 1.25}
    config = json.loads((run / "model" / "config.json").read_text())
    (run / "model" / "config.json").write_text(json.dumps({**config, "rope_theta": 1.0}))
    assert model_version(run / "model") != model_version(tiny_model)


def test_an_arm_is_its_newest_run(tiny_model, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("FINQA_RL_RUNS_DIR", str(tmp_path))
    with pytest.raises(PolicyError, match="no training run of arm 'tiny-local'"):
        load_policy("tiny-local")
    # a run records its arm (the policy asset writes it); an older run only its config, which is its config's arm
    runs = (("a", {"config_name": "tiny-local"}), ("b", {"config_name": "tiny-test"}),
            ("c", {"config_name": "smollm2-cpu", "arm": {"name": "smollm2-cpu-mixed"}}))
    for name, lineage in runs:
        shutil.copytree(tiny_model, tmp_path / name / "model")
        (tmp_path / name / "lineage.json").write_text(json.dumps(lineage))
    assert load_policy("tiny-local").model_dir == (tmp_path / "a" / "model").resolve()
    mixed = load_policy("smollm2-cpu-mixed")
    assert mixed.model_dir == (tmp_path / "c" / "model").resolve() and mixed.name == "smollm2-cpu-mixed"
    with pytest.raises(PolicyError, match="no training run of arm 'smollm2-cpu'"):
        load_policy("smollm2-cpu")  # the same config, another arm


@pytest.mark.parametrize("spec,message", [
    ("", "unknown policy"), ("gpt-4", "unknown policy"), ("hf:", "needs a path"), ("router:oracle,", "two policies"),
    ("base:no-such-model", "unknown base model 'no-such-model'"), ("tiny-untrained", "unknown policy"),
])
def test_bad_policy_specs_are_clear_errors(spec, message):
    with pytest.raises(PolicyError, match=message):
        load_policy(spec)


def test_rollout_progress_as_a_count_or_as_a_line_reaches_the_progress_bar():
    from rl_assets.policies.hf import _episodes_done

    seen = []
    report = _episodes_done(seen.append)
    report(16)
    report("episodes 32/96, correct 3")
    report("loading the model")
    assert seen == [16, 32]


def test_the_untrained_counterpart_of_a_run_is_its_own_starting_point(tiny_model, snapshot_dir, tmp_path, monkeypatch):
    import shutil

    from rl_assets.policies.tiny import untrained_tiny_model

    run = tmp_path / "runs" / "r1"
    shutil.copytree(tiny_model, run / "checkpoints" / "base")
    (run / "checkpoints" / "base" / "prompt.json").unlink()  # a run's base has no prompt.json ...
    (run / "model").mkdir()
    (run / "model" / "config.json").write_text((tiny_model / "config.json").read_text())
    prompt = {"system_prompt": "Use the tools.", "env": {"description_chars": 0}}
    (run / "model" / "prompt.json").write_text(json.dumps(prompt))  # ... the trained model's says how it was played
    (run / "lineage.json").write_text(json.dumps({"config_name": "tiny-local", "arm": {"name": "tiny-local"}}))
    models = tmp_path / "models"
    untrained = untrained_tiny_model(snapshot_dir, models, run)
    assert untrained.parent == models and untrained.name.startswith("tiny-untrained-run-")
    assert json.loads((untrained / "prompt.json").read_text()) == prompt
    assert (untrained / "model.safetensors").read_bytes() == (tiny_model / "model.safetensors").read_bytes()
    assert untrained_tiny_model(snapshot_dir, models, run) == untrained  # copied once
    # the spec resolves to it when a tiny-local run exists; without a base, to the model built for the snapshot
    monkeypatch.setenv("FINQA_RL_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("FINQA_RL_MODELS_DIR", str(models))
    assert load_policy("tiny-local-untrained", snapshot=snapshot_dir).model_dir == untrained
    shutil.rmtree(run / "checkpoints")
    from rl_assets.policies.tiny import build_untrained_tiny_model

    built = load_policy("tiny-local-untrained", snapshot=snapshot_dir).model_dir
    assert built == build_untrained_tiny_model(snapshot_dir, models).resolve()  # tiny-local's starting point, built once
    assert json.loads((built / "recipe.json").read_text())["config"] == "tiny-local"
