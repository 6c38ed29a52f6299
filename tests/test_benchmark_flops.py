"""The benchmark's FLOP count of a PPO update (benchmarks/workers/flops.py): by hand, and against torch's counter."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import LlamaConfig, LlamaForCausalLM

from benchmarks.workers.flops import (
    ceiling_epoch,
    matmul_peak_gflops,
    model_flops,
    update_flops,
    update_matmul_ceiling,
)
from rlxf.algos.ppo import PPOSettings
from rlxf.lm.adapters import attach_policy


def lora_llama(attn_implementation: str = "sdpa"):
    """2 layers, hidden 16, 2 heads of 8 (1 key/value head), MLP 32, vocab 50, tied head; LoRA r=2 on q and v."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
                         attn_implementation=attn_implementation)
    model, _ = attach_policy(LlamaForCausalLM(config), "default",
                             PPOSettings(lora_r=2, lora_alpha=4, lora_target_modules=("q_proj", "v_proj")))
    return model


def test_update_flops_by_hand():
    model = lora_llama()
    # per layer: q 16*16 + k 16*8 + v 16*8 + o 16*16 + gate, up 16*32 + down 32*16 = 2304 weights, 2 layers: 4608
    # LoRA per layer: q A 16*2 + B 2*16, v A 16*2 + B 2*8 = 112, 2 layers: 224; LM head 16*50 = 800
    counted = model_flops(model, "default", rows=3, seq_len=10, kept=5)
    assert counted["weights"] == {"body": 4608 + 224, "head": 800, "trainable": 224}
    attention = 4 * 2 * 10**2 * 16  # QK^T and AV, 2 layers, L = 10, 2 heads * 8
    forward = 2 * 10 * (4608 + 224) + 2 * 5 * 800 + attention  # per sequence
    backward = 2 * 10 * (4608 + 224) + 2 * 10 * 224 + 2 * 5 * 800 + 2 * attention  # input grads + LoRA weight grads
    assert (counted["forward"], counted["backward"]) == (3 * forward, 3 * backward)
    assert update_flops(model, "default", rows=3, seq_len=10, kept=5, epochs=4) == 4 * 3 * (forward + backward)
    # another adapter's LoRA does not run while "default" is active
    model.add_adapter("other", model.peft_config["default"])
    assert model_flops(model, "default", rows=3, seq_len=10, kept=5)["forward"] == 3 * forward


def test_update_flops_match_torchs_flop_counter():
    model = lora_llama(attn_implementation="eager")  # attention as matmuls, which the counter sees
    model.train()
    ids = torch.randint(0, 50, (3, 10))
    with FlopCounterMode(display=False) as counter:
        logits = model(input_ids=ids, logits_to_keep=5).logits
        logits.float().logsumexp(-1).sum().backward()
    counted = model_flops(model, "default", rows=3, seq_len=10, kept=5)
    # What the count includes but autograd skips (the module docstring says so): in layer 0, whose input (the frozen
    # embedding) needs no gradient, the input gradients of q/k/v and of the LoRA A matrices, and dK.
    skipped = 3 * (2 * 10 * (16 * 16 + 16 * 8 + 16 * 8) + 2 * 10 * (16 * 2 + 16 * 2) + 2 * 10**2 * 16)
    assert counter.get_total_flops() == pytest.approx(counted["forward"] + counted["backward"] - skipped, rel=2e-3)


def test_matmul_peak_is_positive_and_leaves_the_rng_alone():
    state = torch.random.get_rng_state()
    peak = matmul_peak_gflops("fp32", sizes=(64,), repeats=1)
    assert peak["gflops"] > 0 and set(peak["by_size"]) == {64} and peak["dtype"] == "fp32"
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_update_matmul_ceiling_executes_exactly_the_counted_flops(dtype):
    model = lora_llama()
    once = ceiling_epoch(model, "default", rows=3, seq_len=10, kept=5, dtype=dtype)
    with FlopCounterMode(display=False) as counter:
        once()
    counted = model_flops(model, "default", rows=3, seq_len=10, kept=5)
    assert counter.get_total_flops() == counted["forward"] + counted["backward"]
    ceiling = update_matmul_ceiling(model, "default", rows=3, seq_len=10, kept=5, dtype=dtype, repeats=2)
    assert ceiling["gflops"] > 0 and ceiling["flops"] == counted["forward"] + counted["backward"]
    assert len(ceiling["seconds"]) == 2 and ceiling["gflops"] >= ceiling["median_gflops"]
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        update_matmul_ceiling(model, "default", rows=3, seq_len=10, kept=5, dtype=dtype, repeats=0)


def test_the_ceiling_runs_the_frozen_linears_on_the_updates_prepacked_kernels():
    from rlxf.lm.precision import Precision, onednn_available, store_frozen_weights

    if not onednn_available(torch.float32, "cpu"):
        pytest.skip("no oneDNN in this torch build")
    model = lora_llama()
    store_frozen_weights(model, Precision(torch.float32, "cpu", "test"))
    packed = [m for m in model.modules() if type(m).__name__ == "FrozenOneDNNLinear"]
    assert model.get_output_embeddings() in packed  # the LM head too, as in the update
    ceiling_epoch(model, "default", rows=3, seq_len=10, kept=5, dtype="fp32")()
    assert all(m._onednn_cache.forward is not None and m._onednn_cache.backward is not None for m in packed)
