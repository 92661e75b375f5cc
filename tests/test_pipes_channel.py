"""rl_assets.pipes.open_pipes on this machine: with the local launcher's Pipes client it behaves exactly as
`open_dagster_pipes()`, and without Dagster its calls do nothing. (Through a bucket: test_skypilot_pipes.py.)"""

import subprocess
import sys
import textwrap

import dagster as dg

CHILD = textwrap.dedent(
    """
    from rl_assets.pipes import open_pipes
    with open_pipes() as pipes:
        pipes.log.info("hello from the child")
        pipes.report_custom_message({"step": 0, "loss": 1.5})
        pipes.report_asset_materialization(metadata={"steps": 1})
    print("child done")
    """
)


def test_open_pipes_with_the_local_subprocess_client(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)

    @dg.asset
    def policy(context: dg.AssetExecutionContext, pipes_subprocess_client: dg.PipesSubprocessClient):
        invocation = pipes_subprocess_client.run(context=context, command=[sys.executable, str(script)])
        assert list(invocation.get_custom_messages()) == [{"step": 0, "loss": 1.5}]
        yield from invocation.get_results()

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [policy], resources={"pipes_subprocess_client": dg.PipesSubprocessClient()}, instance=instance
    )

    assert result.success
    (event,) = result.asset_materializations_for_node("policy")
    assert event.metadata["steps"].value == 1
    assert "hello from the child" in [e.user_message for e in instance.all_logs(result.run_id)]


def test_open_pipes_without_dagster_does_nothing_and_says_so(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no DAGSTER_PIPES_* variables
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "child done"
    assert "orchestration" in done.stderr.lower()  # dagster_pipes' warning that no orchestrator launched it
