"""benchmarks/ppo_vs_trl.py: a run in another dtype joins the committed file instead of replacing it."""

from __future__ import annotations

from benchmarks.ppo_vs_trl import merge_other_dtype


def test_an_fp32_run_keeps_the_bf16_file_and_adds_its_ratios():
    bf16 = {"dtype": "bf16", "ratio_time_lora_critic": 0.45, "decode_by_dtype": {"bf16_1t": {}}}
    fp32 = {"dtype": "fp32", "ratio_time_lora_critic": 0.6, "ratio_memory_lora_critic": 0.7, "runs": [1]}
    merged = merge_other_dtype(bf16, fp32)
    assert merged["ratio_time_lora_critic"] == 0.45 and merged["dtype"] == "bf16"
    assert merged["ratio_time_lora_critic_fp32"] == 0.6 and merged["ratio_memory_lora_critic_fp32"] == 0.7
    assert merged["by_dtype"]["fp32"] is fp32 and merged["decode_by_dtype"] == {"bf16_1t": {}}


def test_a_run_in_the_files_dtype_replaces_it_but_keeps_the_other_dtypes():
    old = {"dtype": "bf16", "ratio_time_lora_critic": 0.5, "ratio_time_lora_critic_fp32": 0.6,
           "by_dtype": {"fp32": {"dtype": "fp32"}}, "decode_by_dtype": {"fp32_1t": {}}}
    new = {"dtype": "bf16", "ratio_time_lora_critic": 0.44}
    merged = merge_other_dtype(old, new)
    assert merged["ratio_time_lora_critic"] == 0.44 and merged["ratio_time_lora_critic_fp32"] == 0.6
    assert merged["by_dtype"] == {"fp32": {"dtype": "fp32"}} and merged["decode_by_dtype"] == {"fp32_1t": {}}
