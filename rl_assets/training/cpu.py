"""What training on a CPU needs beyond TRL's defaults.

TRL's fused LM head (`trl.trainer.utils.add_fused_lm_head`, used by SFTTrainer and GRPOTrainer) computes
log-probabilities in vocabulary tiles without materialising the logits. On devices with Triton it scores only the
positions that have a label; elsewhere it scores every position of the batch (to keep tile shapes fixed for
compilers such as Neuron's). On a CPU nothing is compiled, and scoring every position costs: with SmolLM2's
49,152-token vocabulary, an SFT batch of 2 x 1,600 tokens whose assistant turns are ~10% of the tokens spends most
of its LM-head work, and a 4,096 x 32,768 float tile (~0.5 GB, several copies) per chunk, on positions whose
loss is thrown away. `score_labelled_positions_only()` makes the head score only labelled positions on a CPU, as
TRL does on GPUs: the same loss and gradients, less time and memory.
"""

from __future__ import annotations


def score_labelled_positions_only() -> None:
    """Let TRL's fused LM head take its compact path (labelled positions only) on CPU devices too. Idempotent."""
    import trl.trainer.utils as trl_utils

    original = trl_utils._use_triton
    if getattr(original, "finqa_cpu_compact", False):
        return

    def compact_on_cpu(device) -> bool:
        return device.type == "cpu" or original(device)

    compact_on_cpu.finqa_cpu_compact = True
    trl_utils._use_triton = compact_on_cpu
