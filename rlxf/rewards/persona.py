"""Socrates evaluators that discriminate on a CPU: a speaker classifier and the judge's verdict log-probabilities.

Notebook 03 measures every Socrates evaluator the same way: the ranking accuracy (ROC AUC) of held-out genuine
Socrates turns against other speakers' turns, with a BCa CI, and each criterion's share of its most common verdict
(a criterion that says "yes" to > 90 % of replies cannot tell them apart). Notebook 04's PPO then optimises the one
with the highest lower CI bound at n >= `MIN_RANK_N` (`choose_evaluator`), and 07 scores with the same one
(`load_socrates_reward`).

- `PersonaClassifier` data: TF-IDF + logistic regression (`rlxf.rewards.linear`) on Plato's turns, Socrates (1) vs
  the other speakers (0). `cross_fitted_scores` scores each evaluation turn with a classifier that never saw its
  dialogue (folds of whole dialogues), so the AUC measures a speaker's style, not a dialogue's topic.
- `VerdictLogprobs`: one forward pass of the judge per (reply, criterion); the score is
  log P("Yes") - log P("No") of the judge's first answer token, no generation and no verdict reader.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rlxf.analysis.stats import auc_ci
from rlxf.lm.generation import by_length, chat_prompt, encode_text, padding_id
from rlxf.lm.logprobs import log_distribution
from rlxf.rewards.base import RewardFunction
from rlxf.rewards.classifiers import ClassifierReward, load_saved_classifier
from rlxf.rewards.linear import LinearSettings, LinearTextClassifier

PERSONA_LABELS = ("other", "socrates")
MIN_RANK_N = 64
"""an evaluator PPO optimises must be measured on at least this many genuine turns (and as many others)"""
SATURATED_SHARE = 0.9
"""a criterion whose most common verdict covers more than this share of replies is flagged"""
CHOICE_FILE = "socrates_evaluator.json"
CLASSIFIER_DIR = "socrates-persona"
LOGPROB_SYSTEM_PROMPT = "You are a careful, strict judge. Answer the question with Yes or No only."
LOGPROB_TEMPLATE = 'Here is a line from a dialogue:\n"""\n{reply}\n"""\n\nQuestion: {criterion} Answer Yes or No.'
# few-shot: worked examples in the same message, so one forward pass still gives the verdict's log-probabilities
FEW_SHOT_EXAMPLE = 'Line: """{reply}"""\nQuestion: {criterion}\nAnswer: {answer}\n\n'


def clip_words(text: str, max_words: int) -> str:
    """The first `max_words` words of `text` (long speeches would otherwise dominate the cost)."""
    words = str(text).split()
    return " ".join(words[:max_words])


def evaluation_turns(turns: pd.DataFrame, n: int, *, seed: int, min_words: int = 5,
                     max_words: int = 120) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(genuine, others): `n` held-out (split "test") Socrates turns and `n` other speakers' turns of at least
    `min_words` words, sampled with `seed` (fewer where the table has fewer), each cut to its first `max_words`."""
    need = {"dialogue", "utterance", "is_socrates", "split"}
    if not need <= set(turns.columns):
        raise ValueError(f"plato_turns needs the columns {sorted(need)}, got {sorted(turns.columns)}")
    usable = turns[turns.utterance.str.split().str.len() >= min_words].copy()
    usable["utterance"] = [clip_words(t, max_words) for t in usable.utterance]
    genuine = usable[usable.is_socrates & (usable.split == "test")]
    others = usable[~usable.is_socrates]
    if len(genuine) < 2 or len(others) < 2:
        raise ValueError(f"plato_turns has {len(genuine)} held-out Socrates turns and {len(others)} other turns of "
                         f">= {min_words} words: need two of each for a ranking's CI")
    n = min(n, len(genuine), len(others))
    return genuine.sample(n=n, random_state=seed), others.sample(n=n, random_state=seed)


def training_turns(turns: pd.DataFrame, max_words: int = 120) -> pd.DataFrame:
    """Turns a persona classifier may learn from: every turn but the held-out (split "test") Socrates turns."""
    kept = turns[~(turns.is_socrates & (turns.split == "test"))].copy()
    kept["text"] = [clip_words(t, max_words) for t in kept.utterance]
    return kept[kept.text.str.len() > 0]


def fit_persona(train: pd.DataFrame, settings: LinearSettings | None = None) -> LinearTextClassifier:
    """A `LinearTextClassifier` Socrates (1) vs other speakers (0); its C by cross-validation grouped by dialogue."""
    model = LinearTextClassifier(PERSONA_LABELS, settings or LinearSettings())
    groups = train.dialogue.to_numpy() if train.dialogue.nunique() >= 2 else None  # the fixtures' folds: one dialogue
    return model.fit(train.text.tolist(), train.is_socrates.astype(int).to_numpy(), groups=groups)


def dialogue_folds(dialogues: Sequence[str], n_folds: int, seed: int) -> dict[str, int]:
    """Each dialogue's fold, 0..n_folds-1: shuffled with `seed`, then dealt round-robin."""
    names = sorted(set(dialogues))
    if n_folds < 2 or n_folds > len(names):
        raise ValueError(f"n_folds must be in 2..{len(names)} (the dialogues), got {n_folds}")
    order = np.random.default_rng(seed).permutation(len(names))
    return {names[i]: k % n_folds for k, i in enumerate(order)}


def cross_fitted_scores(turns: pd.DataFrame, texts: Sequence[str], dialogues: Sequence[str], *, n_folds: int = 3,
                        seed: int = 0, settings: LinearSettings | None = None) -> np.ndarray:
    """Log-odds P(Socrates) of each text, from a classifier trained on `training_turns` of the OTHER dialogues."""
    if len(texts) != len(dialogues):
        raise ValueError(f"got {len(texts)} texts and {len(dialogues)} dialogues: need one dialogue per text")
    train = training_turns(turns)
    names = set(train.dialogue) | set(dialogues)
    folds = dialogue_folds(sorted(names), min(n_folds, len(names)), seed)  # the fixture corpora have few dialogues
    scores = np.full(len(texts), np.nan)
    fold_of_text = np.asarray([folds[d] for d in dialogues])
    for fold in sorted(set(fold_of_text.tolist())):
        model = fit_persona(train[train.dialogue.map(folds) != fold], settings)
        picked = np.flatnonzero(fold_of_text == fold)
        logits = model.predict_logits([texts[i] for i in picked])
        scores[picked] = logits[:, 1] - logits[:, 0]
    return scores


class VerdictLogprobs(RewardFunction):
    """The judge's verdict as log-probabilities: per criterion log P(Yes) - log P(No) of its first answer token.

    One forward pass per (completion, criterion), no generation; the reward is the (equal-weight) mean over the
    criteria. `examples`: optional few-shot (reply, answer) pairs put before every question. `last_details` keeps
    the latest batch's per-criterion scores (rows: completions; columns: criteria).
    """

    def __init__(self, model, tokenizer, criteria: Mapping[str, str], *, examples: Sequence[tuple[str, str]] = (),
                 template: str = LOGPROB_TEMPLATE, system_prompt: str = LOGPROB_SYSTEM_PROMPT, batch_size: int = 8,
                 max_reply_words: int = 120, name: str = "judge_logprob"):
        if not criteria:
            raise ValueError("VerdictLogprobs needs at least one criterion")
        if "{reply}" not in template or "{criterion}" not in template:
            raise ValueError("template must contain {reply} and {criterion}")
        for reply, answer in examples:
            if answer not in ("Yes", "No") or not str(reply).strip():
                raise ValueError(f"a few-shot example is (reply, 'Yes' | 'No'), got {(reply, answer)!r}")
        if batch_size < 1 or max_reply_words < 1:
            raise ValueError(f"batch_size and max_reply_words must be >= 1, got {batch_size}, {max_reply_words}")
        self.model, self.tokenizer, self.criteria = model, tokenizer, dict(criteria)
        self.examples, self.template, self.system_prompt = tuple(examples), template, system_prompt
        self.batch_size, self.max_reply_words = batch_size, max_reply_words
        self.yes_ids, self.no_ids = answer_ids(tokenizer, "Yes"), answer_ids(tokenizer, "No")
        self.last_details = pd.DataFrame()
        super().__init__(name)

    def message(self, reply: str, criterion: str) -> str:
        shots = "".join(FEW_SHOT_EXAMPLE.format(reply=clip_words(r, 60), criterion=criterion, answer=a)
                        for r, a in self.examples)
        return shots + self.template.format(reply=clip_words(reply, self.max_reply_words), criterion=criterion)

    @torch.no_grad()
    def yes_minus_no(self, messages: Sequence[str]) -> np.ndarray:
        """log P(Yes) - log P(No) of the judge's first answer token for each user message."""
        ids = [encode_text(self.tokenizer, chat_prompt(self.tokenizer, m, system=self.system_prompt))
               for m in messages]
        out, pad = np.zeros(len(ids)), padding_id(self.tokenizer)
        device = next(self.model.parameters()).device
        order = by_length([len(x) for x in ids])
        was_training = self.model.training
        self.model.eval()
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            width = max(len(ids[i]) for i in batch)
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros_like(input_ids)
            for row, i in enumerate(batch):  # left padding: the last position predicts the answer's first token
                input_ids[row, width - len(ids[i]):], mask[row, width - len(ids[i]):] = ids[i], 1
            positions = (mask.cumsum(1) - 1).clamp(min=0)
            logits = self.model(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                                position_ids=positions.to(device)).logits[:, -1]
            logp = log_distribution(logits).cpu()
            diff = torch.logsumexp(logp[:, self.yes_ids], -1) - torch.logsumexp(logp[:, self.no_ids], -1)
            out[batch] = diff.numpy()
        self.model.train(was_training)
        return out

    def score(self, prompts: list[str], completions: list[str], **kwargs) -> np.ndarray:
        names = list(self.criteria)
        messages = [self.message(c, self.criteria[name]) for c in completions for name in names]
        table = self.yes_minus_no(messages).reshape(len(completions), len(names))
        self.last_details = pd.DataFrame(table, columns=names)
        return table.mean(axis=1)


def answer_ids(tokenizer, word: str) -> list[int]:
    """The first token id of each spelling of `word` a reply may start with ("Yes", " Yes", "yes")."""
    ids = set()
    for spelling in (word, " " + word, word.lower(), " " + word.lower()):
        tokens = tokenizer(spelling, add_special_tokens=False)["input_ids"]
        if tokens:
            ids.add(int(tokens[0]))
    if not ids:
        raise ValueError(f"the tokenizer encodes {word!r} to no tokens")
    return sorted(ids)


def most_common_share(verdicts) -> float:
    """The share of the most common value among `verdicts` (1.0: the criterion says the same of every reply)."""
    values = pd.Series(np.asarray(verdicts).ravel())
    if values.empty:
        raise ValueError("most_common_share needs at least one verdict")
    return float(values.value_counts(normalize=True).iloc[0])


def rank_row(genuine, other, *, seed: int = 0) -> dict:
    """Ranking accuracy (ROC AUC) of genuine over other scores, its 95 % BCa CI and the group sizes."""
    genuine, other = np.asarray(genuine, dtype=float), np.asarray(other, dtype=float)
    ci = auc_ci(np.r_[genuine, other], np.r_[np.ones(len(genuine)), np.zeros(len(other))], seed=seed)
    return {"rank_accuracy": ci["auc"], "ci_low": ci["low"], "ci_high": ci["high"], "n_genuine": ci["n_pos"],
            "n_other": ci["n_neg"]}


def choose_evaluator(table: pd.DataFrame, candidates: Sequence[str], min_n: int = MIN_RANK_N) -> str:
    """The candidate (a row of `table`, from `rank_row`) with the highest lower CI bound among those measured on
    >= `min_n` genuine and other turns."""
    measured = table.loc[[c for c in candidates if c in table.index]]
    measured = measured[(measured.n_genuine >= min_n) & (measured.n_other >= min_n)]
    if measured.empty:
        raise ValueError(f"no candidate evaluator among {list(candidates)} was measured on >= {min_n} turns a group")
    return str(measured.ci_low.astype(float).idxmax())


def save_choice(rewards_dir: str | Path, choice: dict) -> Path:
    """Write notebook 03's chosen evaluator (its kind, criteria, ranking and CI) for 04 and 07."""
    if choice.get("kind") not in ("classifier", "logprob"):
        raise ValueError(f"choice['kind'] must be 'classifier' or 'logprob', got {choice.get('kind')!r}")
    path = Path(rewards_dir) / CHOICE_FILE
    path.write_text(json.dumps(choice, indent=1, default=float) + "\n")
    return path


def load_socrates_reward(rewards_dir: str | Path, load_judge: Callable[[], tuple] | None = None) -> tuple[
        RewardFunction, dict]:
    """(reward, choice): the evaluator notebook 03 chose, as a reward; a log-prob judge calls `load_judge()` for the
    judge's (model, tokenizer)."""
    path = Path(rewards_dir) / CHOICE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: notebook 03 writes the chosen Socrates evaluator here; run 03 first")
    choice = json.loads(path.read_text())
    if choice.get("kind") == "classifier":
        model, _ = load_saved_classifier(Path(rewards_dir) / CLASSIFIER_DIR)
        return ClassifierReward(model, None, label="socrates", output="log_odds", name="socrates_persona"), choice
    if choice.get("kind") == "logprob":
        if load_judge is None:
            raise ValueError(f"{path} chose the judge's verdict log-probabilities: pass load_judge")
        examples = [tuple(pair) for pair in choice.get("examples", [])]
        return VerdictLogprobs(*load_judge(), choice["criteria"], examples=examples), choice
    raise ValueError(f"{path}: 'kind' must be 'classifier' or 'logprob', got {choice.get('kind')!r}")
