"""rl_assets.training.cpu: on a CPU, TRL's fused LM head scores only the labelled positions, with the same loss and
gradients as scoring every position (what TRL does by default on devices without Triton)."""

from __future__ import annotations


def _loss_and_grads(compact: bool):
    import torch
    import trl.trainer.utils as trl_utils
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from rl_assets.training.cpu import score_labelled_positions_only

    torch.manual_seed(0)
    model = Qwen3ForCausalLM(Qwen3Config(vocab_size=500, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=1, head_dim=16))
    trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy"))
    original = trl_utils._use_triton
    try:
        if compact:
            score_labelled_positions_only()
            score_labelled_positions_only()  # idempotent: wraps once
            assert trl_utils._use_triton(torch.device("cpu")) is True
        ids = torch.randint(0, 500, (2, 40))
        labels = ids.clone()
        labels[:, :30] = -100  # only the last turn is learnt, as in assistant-only SFT
        labels[1, 35:] = -100
        out = model(input_ids=ids, labels=labels, fused_lm_head=True)
        out.loss.backward()
        return out.loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, out
    finally:
        trl_utils._use_triton = original


def test_scoring_labelled_positions_only_gives_the_same_loss_and_gradients():
    import torch

    loss_all, grads_all, out_all = _loss_and_grads(compact=False)
    loss_compact, grads_compact, out_compact = _loss_and_grads(compact=True)
    assert abs(loss_all - loss_compact) < 1e-5 and loss_all > 0
    assert grads_all.keys() == grads_compact.keys() and grads_all
    for name in grads_all:
        assert torch.allclose(grads_all[name], grads_compact[name], atol=1e-6), name
    assert torch.allclose(out_all.log_probs, out_compact.log_probs, atol=1e-5)
