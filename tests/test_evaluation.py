"""Policy evaluation (samples, KL, fluency), the statistics of notebook 07, and the GRPO/RLOO runs of notebook 04."""

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from scipy import stats

from rlxf.algos.trl_online import TRLSettings, train_trl
from rlxf.analysis.stats import (
    bootstrap_ci,
    compare,
    compare_paired,
    expected_reward_table,
    least_squares_slope,
    minimum_detectable_effect,
    t_interval,
)
from rlxf.eval.policy import policy_report, summarise
from rlxf.lm.logprobs import token_logprobs
from rlxf.lm.models import load_causal_lm

PROMPTS = ["Propose a condition:", "The fiscal target is", "Describe the reform.", "Another one:"]


@pytest.fixture()
def two_adapters():
    model, tokenizer = load_causal_lm("tiny-llama", device="cpu")
    torch.manual_seed(0)  # the random LoRA weights below: the same adapters whichever tests ran before
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(model, config, adapter_name="policy")
    model.add_adapter("copy", config)
    return model, tokenizer


def test_kl_is_zero_against_itself_and_positive_against_the_base(two_adapters):
    model, tokenizer = two_adapters
    same = policy_report(model, tokenizer, PROMPTS, None, adapter="policy", ref_adapter="policy", max_new_tokens=6)
    assert same.kl.abs().max() < 1e-5 and same.reward.isna().all()
    # k1 is unbiased but noisy per reply, and the random q/v adapter barely moves tiny-llama's next-token
    # distribution; an adapter on the LM head moves it far, so its KL estimate is clearly above 0 on every reply.
    model.add_adapter("far", LoraConfig(r=4, lora_alpha=64, target_modules=["lm_head"], init_lora_weights=False))
    base = policy_report(model, tokenizer, PROMPTS, lambda p, c: [len(x) for x in c], adapter="far",
                         ref_adapter=None, max_new_tokens=6)
    assert (base.kl > 1.0).all()
    assert (base.reward == [len(r) for r in base.reply]).all()
    assert (base.length >= 1).all() and (base.length <= 6).all()
    assert summarise(base)["ref_perplexity"] == pytest.approx(float(np.exp(base.ref_nll.mean())))
    assert model.active_adapter == "policy"  # the report leaves the active adapter as it found it


def test_token_logprobs_match_a_plain_forward(two_adapters):
    model, tokenizer = two_adapters
    query = torch.tensor(tokenizer("Hello there")["input_ids"])
    response = torch.tensor(tokenizer("general kenobi", add_special_tokens=False)["input_ids"])
    (logp,) = token_logprobs(model, tokenizer, [query], [response], adapter="policy", dtype="fp32")
    with torch.no_grad():
        logits = model(input_ids=torch.cat([query, response])[None]).logits[0]
    expected = torch.log_softmax(logits[len(query) - 1:-1], -1).gather(-1, response[:, None]).squeeze(-1)
    np.testing.assert_allclose(logp, expected.numpy(), atol=1e-5)


def test_bootstrap_intervals_are_bca():
    """On a skewed sample BCa differs from the percentile interval; ours is scipy's BCa with the same seed."""
    skewed = np.random.default_rng(1).exponential(1.0, 40)
    expected = stats.bootstrap((skewed,), np.mean, n_resamples=5000, method="BCa", rng=np.random.default_rng(0))
    assert bootstrap_ci(skewed) == pytest.approx(tuple(expected.confidence_interval), abs=1e-9)
    paired = compare_paired(skewed, np.zeros_like(skewed))
    assert (paired["diff_low"], paired["diff_high"]) == pytest.approx(tuple(expected.confidence_interval), abs=1e-9)
    percentile = stats.bootstrap((skewed,), np.mean, n_resamples=5000, method="percentile",
                                 rng=np.random.default_rng(0))
    assert abs(bootstrap_ci(skewed)[1] - percentile.confidence_interval.high) > 1e-3
    assert bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)  # no spread: a degenerate, not a NaN, interval


def test_bootstrap_ci_and_compare():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 1.0, 200), rng.normal(0.0, 1.0, 200)
    low, high = bootstrap_ci(a)
    assert low < a.mean() < high and high - low < 0.5
    result = compare(a, b)
    assert result["diff_low"] < result["diff"] < result["diff_high"] and result["diff_low"] > 0
    assert result["welch_p"] < 1e-6 and result["mannwhitney_p"] < 1e-6
    same = compare(a, a + rng.normal(0, 1e-3, 200))
    assert same["welch_p"] > 0.5 and same["diff_low"] < 0 < same["diff_high"]
    with pytest.raises(ValueError, match="at least 2"):
        bootstrap_ci([1.0])
    with pytest.raises(ValueError, match="non-finite"):
        compare([1.0, np.nan], [1.0, 2.0])


def test_expected_reward_table():
    table = expected_reward_table({"ppo": [1.0, 2.0, 3.0, 4.0], "base": [0.0, 1.0, 2.0, 1.0]}, reference="base")
    assert list(table.index) == ["ppo", "base"]
    assert table.loc["ppo", "diff_vs_base"] == pytest.approx(1.5)
    assert np.isnan(table.loc["base", "welch_p"])
    with pytest.raises(ValueError, match="reference 'sft'"):
        expected_reward_table({"ppo": [1.0, 2.0]}, reference="sft")


def test_compare_paired_uses_the_pairing():
    # A shared per-prompt effect (sd 3) swamps a +0.5 shift for independent tests; the pairing removes it.
    rng = np.random.default_rng(1)
    prompt_effect = rng.normal(0, 3, 64)
    before = prompt_effect + rng.normal(0, 0.3, 64)
    after = before + 0.5 + rng.normal(0, 0.3, 64)
    paired, unpaired = compare_paired(after, before), compare(after, before)
    assert paired["diff"] == pytest.approx(np.mean(after - before))
    assert paired["diff_low"] > 0.3 and paired["diff_high"] < 0.7
    assert unpaired["diff_low"] < 0 < unpaired["diff_high"]  # the same data, analysed as independent samples
    assert paired["wilcoxon_p"] < 1e-6 and paired["t_p"] < 1e-6 and paired["n"] == 64
    assert paired["win_rate"] == pytest.approx(np.mean(after > before))
    # mde: (1.96 + 0.84) * sd / sqrt(n) with sd the differences' standard deviation
    assert paired["mde"] == pytest.approx(2.8016 * np.std(after - before, ddof=1) / 8, rel=1e-3)


def test_compare_paired_known_values_and_bad_input():
    result = compare_paired([2.0, 3.0, 5.0, 4.0], [1.0, 3.0, 2.0, 5.0])  # differences 1, 0, 3, -1
    assert result["diff"] == pytest.approx(0.75)
    assert result["win_rate"] == pytest.approx((1 + 0.5 + 1 + 0) / 4)
    assert result["mean_a"] == pytest.approx(3.5) and result["mean_b"] == pytest.approx(2.75)
    same = compare_paired([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert (same["diff"], same["diff_low"], same["diff_high"], same["wilcoxon_p"], same["win_rate"]) == (
        0.0, 0.0, 0.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="one a and one b per unit: got 3 and 2"):
        compare_paired([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="non-finite"):
        compare_paired([1.0, np.inf], [1.0, 2.0])


def test_minimum_detectable_effect():
    assert minimum_detectable_effect(1.0, 100) == pytest.approx((1.959964 + 0.841621) / 10, rel=1e-5)
    assert minimum_detectable_effect(2.0, 25, power=0.5) == pytest.approx(1.959964 * 2 / 5, rel=1e-5)
    with pytest.raises(ValueError, match="n >= 2"):
        minimum_detectable_effect(1.0, 1)


def test_t_interval_known_values():
    # mean 2, sd 1, n 3: half-width t_(0.975, 2) / sqrt(3) = 4.302653 / 1.732051 = 2.484138
    ci = t_interval([1.0, 2.0, 3.0])
    assert ci["mean"] == 2.0 and ci["sd"] == 1.0 and ci["n"] == 3
    assert ci["low"] == pytest.approx(2 - 2.484138, abs=1e-6) and ci["high"] == pytest.approx(2 + 2.484138, abs=1e-6)
    narrow = t_interval([1.0, 2.0, 3.0], level=0.5)  # t_(0.75, 2) = 0.816497
    assert narrow["high"] - narrow["mean"] == pytest.approx(0.816497 / np.sqrt(3), abs=1e-6)
    same = t_interval([0.5, 0.5])
    assert same["low"] == same["high"] == same["mean"] == 0.5
    with pytest.raises(ValueError, match="at least 2 values"):
        t_interval([1.0])
    with pytest.raises(ValueError, match="non-finite"):
        t_interval([1.0, float("nan")])
    with pytest.raises(ValueError, match="level"):
        t_interval([1.0, 2.0], level=95)


def test_least_squares_slope_known_values():
    assert least_squares_slope([1, 2, 3], [2, 4, 6]) == pytest.approx(2.0)
    # x - mean = [-1.5, -0.5, 0.5, 1.5], y - mean = [-1.5, 0.5, -0.5, 1.5]: 4 / 5
    assert least_squares_slope([0, 1, 2, 3], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert least_squares_slope([1, 2], [50, 50]) == 0.0
    assert least_squares_slope([1, 2, 3], [5, 3, 1]) == pytest.approx(np.polyfit([1, 2, 3], [5, 3, 1], 1)[0])
    with pytest.raises(ValueError, match="one y per x"):
        least_squares_slope([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="two different x"):
        least_squares_slope([2, 2], [1, 3])


def test_expected_reward_table_paired():
    scores = {"ppo": [1.0, 2.0, 3.0, 4.0, 6.0], "base": [0.0, 1.0, 2.0, 3.0, 4.0]}
    table = expected_reward_table(scores, reference="base", paired=True)
    assert table.loc["ppo", "diff_vs_base"] == pytest.approx(1.2)
    assert table.loc["ppo", "win_rate"] == 1.0
    assert table.loc["ppo", "diff_ci_low"] >= 1.0  # every difference is 1 or 2
    assert "welch_p" not in table.columns and table.loc["ppo", "mde"] > 0
    assert expected_reward_table(scores, reference="base").loc["ppo", "mde"] > table.loc["ppo", "mde"]


@pytest.mark.parametrize("method", ["grpo", "rloo"])
def test_trl_runs_train_a_lora_adapter_and_time_each_step(method, tmp_path):
    model, tokenizer = load_causal_lm("tiny-llama", device="cpu")
    settings = TRLSettings(steps=2, prompts_per_step=2, num_generations=2, max_new_tokens=4,
                           lora_target_modules="all-linear", output_dir=str(tmp_path))
    seen = {}

    def reward(prompts, completions, **kwargs):
        seen.update(kwargs)
        return [float(len(c)) for c in completions]

    peft_model, history = train_trl(method, model, tokenizer, {"prompt": PROMPTS, "country": ["A", "B", "C", "D"]},
                                    reward, settings)
    assert list(history.step) == [1, 2] and history.seconds.is_monotonic_increasing
    assert history.reward.notna().all() and history.kl.notna().all()
    assert seen["country"] and set(seen["country"]) <= {"A", "B", "C", "D"}  # extra columns reach the reward
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_trl_settings_reject_bad_values():
    with pytest.raises(ValueError, match="num_generations"):
        TRLSettings(num_generations=1)
    with pytest.raises(ValueError, match="method"):
        from rlxf.algos.trl_online import trl_config
        trl_config("ppo", TRLSettings())
