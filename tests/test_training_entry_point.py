"""`python -m rl_assets.train` without Dagster, as a real subprocess with the tiny-test config: its outputs, its
printed progress, resuming after it was killed mid-run (same final weights as an uninterrupted run), and the
trained model played through rl_assets.rollouts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestration.paths import REPO_ROOT

REQUIRED_STEP_KEYS = {"stage", "step", "wall_s", "loss"}
GRPO_STEP_KEYS = {"reward", "pass_rate", "tool_error_rate", "completion_tokens", "completion_tokens_per_s",
                  "tokens_per_s", "step_s",
                  "reward/well_formed", "reward/company_used", "reward/schema_before_query", "reward/no_hallucination",
                  "reward/recovered", "reward/submitted", "timing/generation_s", "timing/environment_s",
                  "timing/backward_s"}


def command(snapshot: Path, output: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "rl_assets.train", "--config", "tiny-test", "--snapshot", str(snapshot),
            "--output", str(output), *[a for o in overrides for a in ("--set", o)]]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_PIPES")}
    return {**env, "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def uninterrupted_run(snapshot_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("run") / "tiny-test"
    done = subprocess.run(command(snapshot_dir, output), cwd=REPO_ROOT, env=environment(), capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return output, done.stdout


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_entry_point_writes_the_artifact_without_dagster(uninterrupted_run, snapshot_dir):
    output, stdout = uninterrupted_run
    model = output / "model"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "prompt.json"):
        assert (model / name).exists(), name
    assert json.loads((model / "prompt.json").read_text())["env"] == {"description_chars": 0}
    metrics = read_jsonl(output / "metrics.jsonl")
    stages = [(m["stage"], m["step"]) for m in metrics]
    assert stages == [("sft", 2), ("sft", 4), ("sft", 6), ("grpo", 1), ("grpo", 2), ("grpo", 3), ("grpo", 4)]
    assert all(REQUIRED_STEP_KEYS <= set(m) for m in metrics)
    assert all(GRPO_STEP_KEYS <= set(m) for m in metrics if m["stage"] == "grpo")
    for stage, step in stages:  # one printed line per logging step
        assert f"[{stage} {step}]" in stdout
    samples = read_jsonl(output / "samples.jsonl")
    assert samples and {"task_id", "reward", "rubric", "messages"} <= set(samples[0])
    lineage = json.loads((output / "lineage.json").read_text())
    manifest = json.loads((snapshot_dir / "manifest.json").read_text())
    assert lineage["snapshot_hash"] == manifest["snapshot_hash"]
    assert lineage["config_name"] == "tiny-test" and len(lineage["config_hash"]) == 16
    assert lineage["base_model"] == "tiny" and lineage["code_version"] and "trl" in lineage["packages"]
    assert lineage["task_ids"]["train"] and not lineage["task_ids"]["test"] and not lineage["task_ids"]["val"]
    card = (output / "README.md").read_text()
    assert lineage["snapshot_hash"] in card and lineage["config_hash"] in card
    assert (output / "training_curve.png").read_bytes()[:4] == b"\x89PNG"


def run_until(cmd: list[str], line_prefix: str) -> None:
    """Start the entry point and kill it right after it printed a line starting with `line_prefix`."""
    child = subprocess.Popen(cmd, cwd=REPO_ROOT, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True)
    try:
        for line in child.stdout:
            if line.startswith(line_prefix):
                break
        else:
            pytest.fail(f"the run ended before printing {line_prefix!r}")
        child.kill()
    finally:
        child.wait(timeout=60)


def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_weights(uninterrupted_run, snapshot_dir, tmp_path):
    from safetensors.torch import load_file

    reference, _ = uninterrupted_run
    output = tmp_path / "tiny-test"
    run_until(command(snapshot_dir, output), "[sft 4]")  # killed in SFT, after its checkpoint at step 3
    assert (output / "checkpoints" / "sft" / "checkpoint-3").exists() and not (output / "checkpoints" / "grpo").exists()
    run_until(command(snapshot_dir, output), "[grpo 3]")  # resumed SFT, killed in GRPO after checkpoint-2
    assert (output / "checkpoints" / "grpo" / "checkpoint-2").exists()
    assert not (output / "model").exists()

    resumed = subprocess.run(command(snapshot_dir, output), cwd=REPO_ROOT, env=environment(), capture_output=True,
                             text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "sft: finished earlier" in resumed.stdout and "grpo: resuming from checkpoints/grpo/checkpoint-2" in resumed.stdout
    expected, actual = load_file(reference / "model" / "model.safetensors"), load_file(output / "model" / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert (expected[name] - actual[name]).abs().max().item() < 1e-5, name
    steps = [(m["stage"], m["step"]) for m in read_jsonl(output / "metrics.jsonl")]
    assert steps == [(m["stage"], m["step"]) for m in read_jsonl(reference / "metrics.jsonl")]  # no duplicates


def test_rerunning_a_finished_run_reuses_it_and_another_config_is_refused(uninterrupted_run, snapshot_dir):
    output, _ = uninterrupted_run
    again = subprocess.run(command(snapshot_dir, output), cwd=REPO_ROOT, env=environment(), capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0 and "grpo: finished earlier" in again.stdout
    other = subprocess.run(command(snapshot_dir, output, "sft.max_steps=7"), cwd=REPO_ROOT, env=environment(),
                           capture_output=True, text=True, timeout=600)
    assert other.returncode != 0 and "holds a run of config tiny-test" in other.stderr


def test_the_trained_model_plays_held_out_episodes(uninterrupted_run, snapshot_dir):
    from rl_assets.rollouts import run_hf_episodes
    from rl_assets.training.heldout import RATES, behaviour_rates, heldout_tasks

    output, _ = uninterrupted_run
    tasks = heldout_tasks(snapshot_dir, 4)
    episodes = run_hf_episodes(str(output), tasks, snapshot_dir, batch_size=4, max_turns=2, max_new_tokens=24)
    assert [e.task_id for e in episodes] == [t["task_id"] for t in tasks]
    assert all(e.policy == f"hf:{output}" and e.turns >= 1 and e.tokens_out > 0 for e in episodes)
    rates = behaviour_rates(episodes, {t["task_id"]: t for t in tasks})
    assert set(RATES) <= set(rates) and rates["episodes"] == 4
    assert all(t["split"] == "test" and t["question_type"] == "single_table" for t in tasks)


def test_sft_in_passes_of_one_trains_as_the_batch_of_two_it_replaces(snapshot_dir, tmp_path):
    """The smollm2 CPU configs train SFT as batch 1 x gradient accumulation 2 (a batch of one needs no padding mask,
    so attention takes its causal path): the same conversations per step, the same loss and gradients as batch 2."""
    from safetensors.torch import load_file

    runs = {}
    for name, overrides in {"batch": ("sft.batch_size=2",),
                            "passes": ("sft.batch_size=1", "sft.gradient_accumulation_steps=2")}.items():
        output = tmp_path / name
        done = subprocess.run(command(snapshot_dir, output, "sft.max_steps=4", "grpo.enabled=false", *overrides),
                              cwd=REPO_ROOT, env=environment(), capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[name] = output
    batch, passes = (read_jsonl(runs[n] / "metrics.jsonl") for n in ("batch", "passes"))
    assert [m["step"] for m in batch] == [m["step"] for m in passes] == [2, 4]
    for a, b in zip(batch, passes):
        assert a["num_tokens"] == b["num_tokens"]  # the same conversations, no padding counted
        assert abs(a["loss"] - b["loss"]) < 1e-3 * abs(a["loss"]) and abs(a["grad_norm"] - b["grad_norm"]) < 1e-2 * a["grad_norm"]
    expected, actual = (load_file(runs[n] / "model" / "model.safetensors") for n in ("batch", "passes"))
    assert max((expected[k] - actual[k]).abs().max().item() for k in expected) < 1e-3
