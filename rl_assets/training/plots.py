"""The training-curve figure of a run (`training_curve.png`): SFT loss, and GRPO reward with every reward
term and the pass rate, per logging step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CURVE_FILE = "training_curve.png"


def training_curve(metrics: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sft = [m for m in metrics if m["stage"] == "sft"]
    grpo = [m for m in metrics if m["stage"] == "grpo"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    if sft:
        left.plot([m["step"] for m in sft], [m.get("loss") for m in sft], label="loss")
        if any("token_accuracy" in m for m in sft):
            left.plot([m["step"] for m in sft], [m.get("token_accuracy") for m in sft], label="token accuracy")
        left.legend()
    left.set_title("SFT (assistant tokens)")
    left.set_xlabel("step")
    if grpo:
        steps = [m["step"] for m in grpo]
        right.plot(steps, [m.get("reward") for m in grpo], label="shaped reward", linewidth=2.5, color="black")
        keys = sorted({k for m in grpo for k in m if k.startswith("reward/") and k != "reward/std"})
        for key in keys + ["pass_rate"]:
            right.plot(steps, [m.get(key) for m in grpo], label=key.split("/")[-1], alpha=0.8)
        right.legend(fontsize=8)
    right.set_title("GRPO (reward and rubric terms, mean per step)")
    right.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
