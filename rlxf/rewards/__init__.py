"""Rewards: every reward source behind one signature, `reward_fn(prompts, completions, **kwargs) -> list[float]`.

- `base`: the reward_fn protocol (`RewardFunction`, `check_batch`, `check_texts`), `CombinedReward`, `ConstantReward`
- `classifiers`: text classifiers (weighted cross-entropy training, predict, save/load) and `ClassifierReward`
- `linear`: `LinearTextClassifier`, TF-IDF + logistic regression (C by cross-validation) with the classifier API
- `fields`: `FieldOneHot`, a model text's named fields (`Type: ...`) as one-hot columns beside the TF-IDF
- `reports`: a classifier's held-out report, its baselines and calibration
- `tasks`: the studies' three classifiers (MONA experience, party, sentiment), trained once and cached
- `experience`: `ExperienceReward`, P(MET) from the MONA classifier
- `bradley_terry`: Bradley-Terry reward models (TRL `RewardTrainer`) and their ensembles
- `frozen_bt`: a Bradley-Terry reward model as a linear head on frozen sentence embeddings (bagging, IDS on it)
- `robust`: Iterated Data Smoothing (noisy labels) and a mean-and-variance model (annotators who disagree)
- `judge`: the judge-evaluator pipeline (a local model or an OpenAI-compatible endpoint)
- `secrets`: an endpoint's API key: checked before use, out of the HTTP stack's logs, redacted from what comes back

Submodules load on first use (`from rlxf.rewards import X` imports only X's module): rlxf's PPO needs `base` alone,
and importing every submodule (TRL, datasets, pandas, scikit-learn) would add ~140 MB to each process that trains.
"""

import importlib

_HOMES = {  # submodule -> the names this package gives from it
    "base": ("CombinedReward", "ConstantReward", "RewardFunction", "check_batch", "check_texts"),
    "classifiers": ("ClassifierResult", "ClassifierReward", "ClassifierSettings", "balanced_class_weights",
        "check_labels", "load_saved_classifier", "predict_logits", "predict_proba", "save_classifier",
        "train_classifier"),
    "linear": ("LinearSettings", "LinearTextClassifier"),
    "reports": ("Calibration", "baselines", "calibration", "classification_report", "tfidf_logreg_proba"),
    "tasks": ("MONA_LABELS", "PARTIES", "SENTIMENT_LABELS", "ClassifierTask", "FittedClassifier", "fit_classifier",
        "fit_linear", "mona_task", "party_task", "sentiment_task"),
    "experience": ("MONA_METADATA_FIELDS", "ExperienceReward"),
    "bradley_terry": ("PreferenceResult", "PreferenceSettings", "RewardEnsemble", "bradley_terry_loss", "check_pairs",
        "clean_pairs", "encode_texts", "flip_labels", "pairwise_accuracy", "score_pairs", "score_texts",
        "train_reward_model"),
    "frozen_bt": ("FrozenBTSettings", "FrozenEncoderReward", "embed_pairs", "fit_bt_head", "train_frozen_bt",
        "train_frozen_bt_ensemble", "train_frozen_ids"),
    "robust": ("ids_relabel", "score_mean_variance", "train_ids_reward_model", "train_mean_variance_model"),
    "judge": ("JUDGE_SYSTEM_PROMPT", "JUDGE_TEMPLATE", "Evaluator", "EvaluatorSettings", "HTTPJudge", "JudgeError",
        "JudgeReply", "LocalJudge", "VerdictSentiment", "parse_verdict", "ranking_accuracy", "verdict_score"),
}
_WHERE = {name: module for module, names in _HOMES.items() for name in names}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'rlxf.rewards' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"rlxf.rewards.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
