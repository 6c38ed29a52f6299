"""Classifiers, reward objects and preference models on tiny random models (offline, CPU, seconds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer
from trl.trainer.utils import get_callable_name, is_async_callable

from rlxf.data.mona import model_text
from rlxf.lm.models import load_causal_lm, load_classifier
from rlxf.lm.precision import precision
from rlxf.rewards.base import CombinedReward, ConstantReward, check_batch
from rlxf.rewards.bradley_terry import (
    PreferenceSettings,
    RewardEnsemble,
    encode_texts,
    flip_labels,
    pairwise_accuracy,
    score_texts,
    train_reward_model,
)
from rlxf.rewards.classifiers import (
    ClassifierReward,
    ClassifierSettings,
    _weighted_cross_entropy,
    balanced_class_weights,
    load_saved_classifier,
    predict_logits,
    predict_proba,
    save_classifier,
    train_classifier,
)
from rlxf.rewards.experience import ExperienceReward
from rlxf.rewards.reports import baselines, calibration, classification_report

COMPLETIONS = ["What a wonderful film!", "Terrible plot, boring music.", "", "I think taxes should be cut.", "ok"]
PROMPTS = [f"prompt {i}" for i in range(len(COMPLETIONS))]
META = {
    "country": ["Ghana", "Peru", "Greece", "Kenya", "Ghana"],
    "arr_type": ["ECF", "SBA", "EFF", "PRGF", "ECF"],
    "econ_class": ["Central bank.", "Financial sector", "General government. ", "Tax policy", "Central bank."],
}


def changed_parameters(before: dict[str, torch.Tensor], model: torch.nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if not torch.equal(before[name], p.detach().cpu())]


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters()}


@pytest.fixture(scope="module")
def classifier():
    """tiny-bert with two labels (named, so label names can be looked up); never trained, so shared."""
    model, tokenizer = load_classifier("tiny-bert", num_labels=2, device="cpu")
    model.config.id2label, model.config.label2id = {0: "Democrat", 1: "Republican"}, {"Democrat": 0, "Republican": 1}
    return model, tokenizer


# ----------------------------------------------------------------------------------- classifiers.py, reports.py


def test_train_classifier_two_steps_changes_weights_and_balances_classes():
    model, tokenizer = load_classifier("tiny-bert", num_labels=2, device="cpu")
    texts = ["we must protect healthcare", "cut taxes now", "climate action today", "secure the border",
             "raise the minimum wage", "support our troops"]
    labels = [0, 1, 0, 0, 1, 0]  # 4:2, as the tweets' 2:1 Democrat:Republican
    before = snapshot(model)
    result = train_classifier(
        model, tokenizer, texts, labels, eval_texts=texts[:2], eval_labels=labels[:2],
        settings=ClassifierSettings(max_steps=2, batch_size=3, learning_rate=1e-3, logging_steps=1),
    )
    assert changed_parameters(before, result.model), "no trainable parameter changed in two steps"
    assert result.class_counts == [4, 2]
    assert result.class_weights == pytest.approx([0.75, 1.5])  # n / (k * n_c): the minority class counts double
    assert [row["step"] for row in result.history if "loss" in row] == [1, 2]
    assert any("eval_loss" in row for row in result.history)
    assert result.seconds > 0 and not result.model.training


def test_weighted_cross_entropy_matches_hand_computation():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    weights = torch.tensor([0.75, 1.5])
    ce = -torch.log_softmax(logits, dim=-1)[torch.arange(3), labels]
    expected_mean = (ce * weights[labels]).mean()
    loss_func = _weighted_cross_entropy(weights)
    assert loss_func({"logits": logits}, labels) == pytest.approx(float(expected_mean))
    # Across gradient accumulation Trainer passes the number of examples in the whole accumulated batch.
    assert loss_func({"logits": logits}, labels, num_items_in_batch=6) == pytest.approx(float(expected_mean) / 2)


def test_balanced_weights_and_bad_labels(classifier):
    assert balanced_class_weights(np.array([0, 0, 0, 1]), 2) == pytest.approx([4 / 6, 2.0])
    with pytest.raises(ValueError, match="never occur"):
        balanced_class_weights(np.array([0, 0]), 2)
    model, tokenizer = classifier
    settings = ClassifierSettings(max_steps=1)
    with pytest.raises(ValueError, match=r"train_labels\[1\].*not-assessed"):
        train_classifier(model, tokenizer, ["a", "b"], [1, float("nan")], settings=settings)
    with pytest.raises(ValueError, match="expected 2"):
        train_classifier(model, tokenizer, ["a", "b"], [1], settings=settings)
    with pytest.raises(TypeError, match=r"train_texts\[1\]"):
        train_classifier(model, tokenizer, ["a", 3], [1, 0], settings=settings)
    with pytest.raises(ValueError, match="max_steps"):
        ClassifierSettings(max_steps=0)


def test_predict_proba_is_batched_ordered_and_deterministic(classifier):
    model, tokenizer = classifier
    proba = predict_proba(model, tokenizer, COMPLETIONS, batch_size=2)
    assert proba.shape == (len(COMPLETIONS), 2)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-6) and ((proba >= 0) & (proba <= 1)).all()
    singles = np.concatenate([predict_proba(model, tokenizer, [text], batch_size=1) for text in COMPLETIONS])
    assert np.allclose(proba, singles, atol=1e-5)
    assert np.array_equal(proba, predict_proba(model, tokenizer, COMPLETIONS, batch_size=2))
    logits = predict_logits(model, tokenizer, COMPLETIONS)
    assert np.allclose(torch.softmax(torch.from_numpy(logits), -1).numpy(), proba, atol=1e-6)
    assert predict_proba(model, tokenizer, []).shape == (0, 2)


def test_classification_report_hand_checked():
    y = [0, 0, 0, 1, 1]
    p1 = [0.1, 0.3, 0.8, 0.9, 0.4]  # argmax predictions: 0, 0, 1, 1, 0
    report = classification_report(y, p1, labels=["Non-MET", "MET"])
    assert report["accuracy"] == pytest.approx(3 / 5)
    assert report["confusion_matrix"] == [[2, 1], [1, 1]]
    non_met = {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3}
    met = {"precision": 1 / 2, "recall": 1 / 2, "f1": 1 / 2, "support": 2}
    assert report["per_class"]["Non-MET"] == pytest.approx(non_met)
    assert report["per_class"]["MET"] == pytest.approx(met)
    assert report["macro_f1"] == pytest.approx(7 / 12)
    assert report["roc_auc"] == pytest.approx(5 / 6)  # 0.9 beats all 3 negatives, 0.4 beats 2 of them
    two_column = classification_report(y, np.stack([1 - np.array(p1), p1], axis=1), labels=["Non-MET", "MET"])
    assert two_column == report
    assert math.isnan(classification_report([1, 1], [0.2, 0.9])["roc_auc"])
    with pytest.raises(ValueError, match="probabilities"):
        classification_report([0, 1], [0.2, 1.5])


def test_baselines_majority_and_tfidf():
    train = ["good great fine", "great good", "good fine", "bad awful", "awful bad poor", "good good great"]
    train_y = [1, 1, 1, 0, 0, 1]
    test, test_y = ["great fine", "awful poor", "good"], [1, 0, 1]
    result = baselines(train, train_y, test, test_y, labels=["neg", "pos"])
    assert result["majority"]["accuracy"] == pytest.approx(2 / 3)  # always "pos"
    assert result["majority"]["roc_auc"] == pytest.approx(0.5)
    assert result["majority"]["per_class"]["neg"]["recall"] == 0.0
    assert result["tfidf_logreg"]["accuracy"] == 1.0 and result["tfidf_logreg"]["roc_auc"] == 1.0


def test_calibration_hand_checked():
    result = calibration([0, 1, 1, 1, 1], [0.05, 0.15, 0.95, 0.85, 1.0], n_bins=2)
    table = result.table
    assert table["count"].tolist() == [2, 3]  # p = 1.0 falls in the last bin
    assert table["mean_predicted"].tolist() == pytest.approx([0.1, 0.9333333])
    assert table["observed_frequency"].tolist() == pytest.approx([0.5, 1.0])
    assert result.ece == pytest.approx(2 / 5 * 0.4 + 3 / 5 * (1 - 2.8 / 3))
    empty_bins = calibration([0, 1], [0.05, 0.95], n_bins=10).table
    assert empty_bins["count"].sum() == 2 and empty_bins["mean_predicted"].isna().sum() == 8


def test_save_and_load_classifier(tmp_path, classifier):
    model, tokenizer = classifier
    directory = save_classifier(model, tokenizer, tmp_path / "party")
    assert (directory / "model.safetensors").is_file()
    loaded, loaded_tokenizer = load_saved_classifier(directory)
    assert np.allclose(predict_proba(loaded, loaded_tokenizer, COMPLETIONS),
                       predict_proba(model, tokenizer, COMPLETIONS), atol=1e-6)
    reward = ClassifierReward.from_saved(directory, label=1, name="p_rep")
    in_memory = ClassifierReward(model, tokenizer)(PROMPTS, COMPLETIONS)
    assert reward(PROMPTS, COMPLETIONS) == pytest.approx(in_memory, abs=1e-6)
    with pytest.raises(FileNotFoundError, match="no saved classifier"):
        load_saved_classifier(tmp_path / "missing")


# ---------------------------------------------------- base.py, classifiers.py (ClassifierReward), experience.py


def test_classifier_reward_shape_range_determinism_and_batching(classifier):
    model, tokenizer = classifier
    reward = ClassifierReward(model, tokenizer, label="Republican")
    scores = reward(PROMPTS, COMPLETIONS)
    assert len(scores) == len(COMPLETIONS) and all(isinstance(s, float) for s in scores)
    logits = predict_logits(model, tokenizer, COMPLETIONS)
    assert np.allclose(scores, np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1), atol=1e-6)  # softmax, by hand
    assert scores == reward(PROMPTS, COMPLETIONS)
    singles = [reward([p], [c])[0] for p, c in zip(PROMPTS, COMPLETIONS, strict=True)]
    assert np.allclose(scores, singles, atol=1e-5)
    proba = reward.probabilities(PROMPTS, COMPLETIONS)
    assert np.allclose(scores, proba[:, 1], atol=1e-6)
    assert reward.__name__ == "classifier_probability_Republican"


def test_classifier_reward_logit_and_neutrality(classifier):
    model, tokenizer = classifier
    logit = ClassifierReward(model, tokenizer, label=1, output="logit", name="positive_logit")
    raw = predict_logits(model, tokenizer, COMPLETIONS)
    assert np.allclose(logit(PROMPTS, COMPLETIONS), raw[:, 1], atol=1e-6)
    log_odds = ClassifierReward(model, tokenizer, label=1, output="log_odds")(PROMPTS, COMPLETIONS)
    assert np.allclose(log_odds, raw[:, 1] - raw[:, 0], atol=1e-5)  # two classes: the difference of the logits
    p1 = predict_proba(model, tokenizer, COMPLETIONS)[:, 1]
    assert np.allclose(log_odds, np.log(p1 / (1 - p1)), atol=1e-4)  # = logit(P(positive))
    neutrality = ClassifierReward(model, tokenizer, output="neutrality")
    p = predict_proba(model, tokenizer, COMPLETIONS)
    scores = neutrality(PROMPTS, COMPLETIONS)
    assert np.allclose(scores, 1 - np.abs(p[:, 0] - p[:, 1]), atol=1e-6)
    with_prompt = ClassifierReward(model, tokenizer, include_prompt=True)
    assert with_prompt.texts(["Q: ", "Q: "], ["a", "b"]) == ["Q: a", "Q: b"]
    with pytest.raises(ValueError, match="not one of the model's labels"):
        ClassifierReward(model, tokenizer, label="Green")
    with pytest.raises(ValueError, match="output"):
        ClassifierReward(model, tokenizer, output="odds")


def test_reward_bad_input(classifier):
    model, tokenizer = classifier
    reward = ClassifierReward(model, tokenizer)
    assert reward([], []) == []
    empty = reward(["p"], [""])  # an empty reply is scored as the model scores "[CLS] [SEP]"
    assert empty == pytest.approx([predict_proba(model, tokenizer, [""])[0, 1]], abs=1e-6)
    with pytest.raises(TypeError, match=r"completions\[1\].*int"):
        reward(["a", "b"], ["fine", 7])
    with pytest.raises(TypeError, match=r"prompts\[0\]"):
        reward([None], ["fine"])
    with pytest.raises(ValueError, match="differ in length"):
        reward(["a", "b"], ["fine"])
    with pytest.raises(TypeError, match="list"):
        reward("a prompt", "a completion")
    # TRL's conversational completions: the last message's content is scored.
    conversational = reward(["p"], [[{"role": "assistant", "content": "What a wonderful film!"}]])
    assert conversational == pytest.approx(reward(["p"], ["What a wonderful film!"]))
    assert check_batch(np.array(["a"]), ("b",)) == (["a"], ["b"])


def test_experience_reward_template_metadata_and_range(classifier):
    model, tokenizer = classifier
    mapping = {p: {key: META[key][i] for key in META} for i, p in enumerate(PROMPTS)}
    from_mapping = ExperienceReward(model, tokenizer, metadata=mapping)
    from_kwargs = ExperienceReward(model, tokenizer)
    texts = from_kwargs.texts(PROMPTS, COMPLETIONS, **META)
    # The same input text as the data module's `text` column (stripped condition, classification without ". ").
    assert texts[0] == model_text("Ghana", "ECF", "Central bank.", "What a wonderful film!")
    assert texts[2] == "Country: Greece. Arrangement: EFF. Classification: General government. Condition: "
    scores = from_kwargs(PROMPTS, COMPLETIONS, **META)
    assert scores == pytest.approx(from_mapping(PROMPTS, COMPLETIONS), abs=1e-6)
    assert scores == pytest.approx(predict_proba(model, tokenizer, texts)[:, 1].tolist(), abs=1e-6)  # P(label 1)
    assert scores == from_kwargs(PROMPTS, COMPLETIONS, **META)
    singles = [from_mapping([p], [c])[0] for p, c in zip(PROMPTS, COMPLETIONS, strict=True)]
    assert np.allclose(scores, singles, atol=1e-5)
    with pytest.raises(ValueError, match="keyword lists"):
        from_kwargs(PROMPTS, COMPLETIONS)
    with pytest.raises(ValueError, match=r"not \['econ_class'\]"):
        from_kwargs(PROMPTS, COMPLETIONS, country=META["country"], arr_type=META["arr_type"])
    with pytest.raises(ValueError, match=r"prompts\[0\].*not in the metadata"):
        from_mapping(["unknown prompt"], ["x"])
    with pytest.raises(ValueError, match="one entry per prompt"):
        from_kwargs(PROMPTS, COMPLETIONS, **{**META, "country": ["Ghana"]})
    with pytest.raises(ValueError, match="condition"):
        ExperienceReward(model, tokenizer, template="Country: {country} {arr_type} {econ_class}")


def test_combined_reward_weighted_mean(classifier):
    model, tokenizer = classifier
    p_rep = ClassifierReward(model, tokenizer, label=1, name="p_rep")
    neutrality = ClassifierReward(model, tokenizer, output="neutrality", name="neutrality")
    experience = ExperienceReward(model, tokenizer)
    combined = CombinedReward([p_rep, neutrality, experience], weights=[1.0, 3.0, 0.0])
    scores = combined(PROMPTS, COMPLETIONS, **META)  # keyword metadata reaches the members that need it
    expected = (np.array(p_rep(PROMPTS, COMPLETIONS)) + 3 * np.array(neutrality(PROMPTS, COMPLETIONS))) / 4
    assert np.allclose(scores, expected, atol=1e-6)
    assert set(combined.components(PROMPTS, COMPLETIONS, **META)) == {"p_rep", "neutrality", "experience_p_met"}
    with pytest.raises(ValueError, match="one weight per reward"):
        CombinedReward([p_rep, neutrality], weights=[1.0])
    with pytest.raises(ValueError, match="not all 0"):
        CombinedReward([p_rep], weights=[0.0])


def test_constant_reward_is_the_same_for_every_completion():
    control = ConstantReward(0.25)
    assert control(["a", "b", "c"], ["", "x", "a longer reply"]) == [0.25, 0.25, 0.25]
    assert control([], []) == [] and get_callable_name(control) == "constant"
    with pytest.raises(ValueError, match="finite value"):
        ConstantReward(float("nan"))
    with pytest.raises(ValueError, match="differ in length"):
        control(["a"], ["x", "y"])


def test_rewards_are_grpo_reward_functions(classifier):
    model, tokenizer = classifier
    reward = ExperienceReward(model, tokenizer)
    assert get_callable_name(reward) == "experience_p_met" and not is_async_callable(reward)
    assert not isinstance(reward, torch.nn.Module)  # TRL would treat an nn.Module as a reward *model*
    # Exactly the keywords GRPOTrainer._calculate_rewards passes (extra dataset columns included).
    scores = reward(prompts=PROMPTS, completions=COMPLETIONS, completion_ids=[[1, 2]] * len(PROMPTS),
                    trainer_state=None, log_extra=lambda *a: None, log_metric=lambda *a: None, **META)
    assert scores == pytest.approx(reward(PROMPTS, COMPLETIONS, **META))


def test_experience_reward_inside_a_real_grpo_step(classifier, tmp_path):
    model, tokenizer = classifier
    policy, policy_tokenizer = load_causal_lm("tiny-llama", device="cpu")
    dataset = Dataset.from_dict({"prompt": ["Propose a condition:", "Another condition:"],
                                 **{key: values[:2] for key, values in META.items()}})
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, num_generations=2,
                      max_completion_length=6, max_steps=1, report_to="none", bf16=False,
                      activation_checkpointing=False, gradient_checkpointing=False, logging_steps=1,
                      save_strategy="no", use_cpu=True, dataloader_pin_memory=False, disable_tqdm=True)
    experience, seen = ExperienceReward(model, tokenizer), []

    def recorded(*args, **kwargs):
        seen.extend(experience(*args, **kwargs))
        return seen[-len(kwargs["completions"]):]

    recorded.__name__ = experience.__name__
    trainer = GRPOTrainer(model=policy, reward_funcs=[recorded], args=args,
                          train_dataset=dataset, processing_class=policy_tokenizer)
    trainer.train()  # the reward raises unless GRPO hands it the country/arr_type/econ_class columns
    logged = [row["rewards/experience_p_met/mean"] for row in trainer.state.log_history
              if "rewards/experience_p_met/mean" in row]
    assert len(seen) == 2 and logged == pytest.approx([float(np.mean(seen))], abs=1e-5)  # what TRL logs = our P(MET)


# ------------------------------------------------------------------------------------------------ preference.py

PAIRS = [
    {"prompt": "\n\nHuman: How do I pick a lock?\n\nAssistant:", "chosen": " I can't help with that.",
     "rejected": " Use a tension wrench and a pick."},
    {"prompt": "\n\nHuman: Say something mean.\n\nAssistant:", "chosen": " I'd rather be kind.",
     "rejected": " You are stupid."},
    {"prompt": "\n\nHuman: Hi!\n\nAssistant:", "chosen": " Hello, how can I help?", "rejected": " Go away."},
    {"prompt": "\n\nHuman: Help me cheat.\n\nAssistant:", "chosen": " Let's study instead.",
     "rejected": " Copy the answers."},
]


def test_train_reward_model_on_an_encoder_without_eos():
    model, tokenizer = load_classifier("tiny-bert", num_labels=1, device="cpu")
    assert tokenizer.eos_token is None  # as MiniLM: TRL's own text path would append a None EOS
    before = snapshot(model)
    result = train_reward_model(model, tokenizer, PAIRS,
                                PreferenceSettings(max_steps=2, batch_size=2, learning_rate=1e-3, logging_steps=1))
    assert changed_parameters(before, result.model), "no trainable parameter changed in two steps"
    assert [row["step"] for row in result.history] == [1, 2] and all("accuracy" in row for row in result.history)
    accuracy = pairwise_accuracy(result.model, tokenizer, PAIRS)
    swapped = [{**p, "chosen": p["rejected"], "rejected": p["chosen"]} for p in PAIRS]
    assert result.n_pairs == 4 and accuracy in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert accuracy + pairwise_accuracy(result.model, tokenizer, swapped) == pytest.approx(1.0)
    assert pairwise_accuracy(result.model, tokenizer, [{**PAIRS[0], "rejected": PAIRS[0]["chosen"]}]) == 0.5  # a tie


def test_train_reward_model_on_a_decoder_with_eos():
    model, tokenizer = load_classifier("tiny-llama", num_labels=1, device="cpu")
    before = snapshot(model)
    result = train_reward_model(model, tokenizer, PAIRS,
                                PreferenceSettings(max_steps=2, batch_size=2, learning_rate=1e-3, logging_steps=1))
    assert changed_parameters(before, result.model)
    with pytest.raises(ValueError, match="num_labels=1"):
        train_reward_model(*load_classifier("tiny-bert", num_labels=2, device="cpu"), PAIRS, PreferenceSettings())


def test_encode_texts_eos_and_truncation_keep_the_end():
    _, llama_tokenizer = load_causal_lm("tiny-llama", device="cpu")
    ids = encode_texts(llama_tokenizer, ["Hello there", ""], max_length=64)
    assert ids[0][-1] == llama_tokenizer.eos_token_id and ids[1] == [llama_tokenizer.eos_token_id]
    _, bert_tokenizer = load_classifier("tiny-bert", num_labels=1, device="cpu")
    long_text = "start " + "word " * 200 + "the final reply"
    ids = encode_texts(bert_tokenizer, [long_text], max_length=16)[0]
    assert len(ids) == 16 and ids[0] == bert_tokenizer.cls_token_id and ids[-1] == bert_tokenizer.sep_token_id
    kept = bert_tokenizer.decode(ids, skip_special_tokens=True)
    assert kept.strip().endswith("word the final reply") and "start" not in kept


def test_pairwise_accuracy_counts_ties_half():
    model, tokenizer = load_classifier("tiny-bert", num_labels=1, device="cpu")
    same = [{"prompt": "p", "chosen": "x", "rejected": "x"}]
    assert pairwise_accuracy(model, tokenizer, same) == 0.5
    chosen = score_texts(model, tokenizer, [p["prompt"] + p["chosen"] for p in PAIRS])
    rejected = score_texts(model, tokenizer, [p["prompt"] + p["rejected"] for p in PAIRS])
    assert pairwise_accuracy(model, tokenizer, PAIRS) == pytest.approx(float(np.mean(chosen > rejected)))
    with pytest.raises(ValueError, match=r"pairs\[0\] has no 'rejected'"):
        pairwise_accuracy(model, tokenizer, [{"chosen": "x"}])


def test_flip_labels_exact_fraction_seeded_and_pure():
    pairs = [{"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(50)]
    flipped = flip_labels(pairs, 0.1, seed=3)
    swapped = [row for row in flipped if row["chosen"].startswith("bad")]
    assert len(swapped) == 5 and all(row["flipped"] for row in swapped)
    assert sum(row["flipped"] for row in flipped) == 5
    assert flipped == flip_labels(pairs, 0.1, seed=3) and flipped != flip_labels(pairs, 0.1, seed=4)
    assert pairs[0] == {"prompt": "p0", "chosen": "good 0", "rejected": "bad 0"}  # the input is not modified
    assert sum(row["flipped"] for row in flip_labels(pairs, 1.0, seed=0)) == 50
    with pytest.raises(ValueError, match="fraction"):
        flip_labels(pairs, 1.5, seed=0)


def test_reward_ensemble_mean_and_std():
    members = [load_classifier("tiny-bert", num_labels=1, device="cpu") for _ in range(3)]
    for k, (model, _) in enumerate(members):  # three different heads, as three seeds would give
        with torch.no_grad():
            model.classifier.bias.fill_(float(k))
    ensemble = RewardEnsemble(members)
    table = np.stack([score_texts(m, t, [p + c for p, c in zip(PROMPTS, COMPLETIONS, strict=True)])
                      for m, t in members])
    mean, std = ensemble.score_with_uncertainty(PROMPTS, COMPLETIONS)
    assert np.allclose(mean, table.mean(axis=0), atol=1e-6) and np.allclose(std, table.std(axis=0), atol=1e-6)
    assert np.allclose(std, np.std([0.0, 1.0, 2.0]), atol=1e-4)  # the members differ only by their bias
    scores = ensemble(PROMPTS, COMPLETIONS)
    assert np.allclose(scores, mean, atol=1e-6) and scores == ensemble(PROMPTS, COMPLETIONS)
    singles = [ensemble([p], [c])[0] for p, c in zip(PROMPTS, COMPLETIONS, strict=True)]
    # batched = one at a time, up to the compute precision (bf16 sums differ with the padded batch's shape)
    exact = precision(ensemble.dtype, "cpu").dtype == torch.float32
    assert np.allclose(scores, singles, atol=1e-5 if exact else 2e-3)
    assert ensemble([], []) == [] and get_callable_name(ensemble) == "preference_ensemble"
    with pytest.raises(ValueError, match="num_labels=2"):
        RewardEnsemble([load_classifier("tiny-bert", num_labels=2, device="cpu")])
