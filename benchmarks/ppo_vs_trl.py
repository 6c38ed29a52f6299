"""rlxf.ppo vs TRL 1.12.0's experimental PPOTrainer: seconds per update, peak memory and reward on one LoRA-PPO task.

    python benchmarks/ppo_vs_trl.py [--model smollm2-135m-instruct] [--updates 8] [--repeats 2] [--threads 2]

Both libraries get the same policy (LoRA r=8 on q_proj/v_proj), the same 4 chat prompts, the same reward model (the
base under a seeded linear head, `load_classifier(model, num_labels=1)`), the same sampling (temperature, top_k=0,
top_p=1, at most `max_new_tokens`, stop at the tokenizer's EOS, which is kept and scored), 4 PPO epochs on one
minibatch of 4, AdamW at a constant lr, a fixed KL coefficient (k1), fp32, CPU, the same thread count.
Each run is a fresh subprocess (rlxf, TRL, rlxf, TRL, ...), so its peak RSS is its own. TRL 1.12.0 is installed with
`pip --target` into its own directory (the venv's trl 1.16 is untouched) and put first on `sys.path` of TRL runs only.

An update is generation + reward scoring + the PPO step, for both: rlxf's loop is `generate` -> score -> `step`,
timed here; TRL owns its loop, so an update is the time between its `on_step_end` callbacks (which also covers its
per-update logging and gc.collect()). The first update is a warm-up and is left out of the medians.
Reward: the training batches' reward-model scores (mean over the last quarter of the updates) and an evaluation
done identically for both (same sampling code, seed and reward model) before and after training.
Results: a table on stdout and `artifacts/benchmarks/ppo_vs_trl.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import importlib.metadata
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: make `rlxf` importable without installing it
    sys.path.insert(0, str(REPO_ROOT))

TRL_VERSION = "1.12.0"
LIBRARIES = ("rlxf", "trl")
TARGETS = {"time_ratio": 0.5, "peak_rss_ratio": 0.6}
REWARD_HEAD_SEED = 1234  # the reward model's linear head: the same in every subprocess
EVAL_SEED_OFFSET = 10_000  # evaluation sampling uses seed + this, the same for both libraries
# Openings of movie reviews (IMDB style), continued by the policy; asked through the model's chat template.
REVIEW_OPENINGS = (
    "I went into this movie expecting very little, and",
    "The acting in this film was",
    "After twenty minutes I had already decided that this movie",
    "My whole family watched this on a rainy Sunday and",
)


@dataclass
class BenchSettings:
    """The task and PPO settings shared by both libraries."""

    model: str = "smollm2-135m-instruct"
    """policy base and reward-model base: an rlxf model name (`tiny-llama` for a quick check) or a directory"""
    updates: int = 8
    """PPO updates per run (the first is a warm-up, left out of the timing medians)"""
    threads: int = 2
    """torch / OpenMP threads of every run"""
    seed: int = 0
    """seed of repeat 0; repeat r uses seed + r for both libraries"""
    batch_size: int = 4
    """prompts (rollouts) per update"""
    num_minibatches: int = 1
    """minibatches per PPO epoch"""
    ppo_epochs: int = 4
    """optimisation passes over each batch"""
    learning_rate: float = 1e-4
    """AdamW learning rate, constant (TRL's default linear decay is switched off)"""
    max_new_tokens: int = 32
    """most tokens generated per reply"""
    temperature: float = 0.7
    """sampling temperature (also divides the logits of the PPO log-probs, in both libraries)"""
    kl_coef: float = 0.05
    """fixed KL coefficient (TRL's default; rlxf's adaptive controller is switched off)"""
    lora_r: int = 8
    """LoRA rank of the policy adapter"""
    lora_alpha: int = 16
    """LoRA scaling numerator"""
    lora_target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    """modules that get LoRA"""
    trl_critic: str = "full"
    """TRL's separate value model: "full" (TRL's documented setup, all weights train) or "lora" (LoRA + head)"""
    eval_samples: int = 4
    """samples per prompt in the before/after evaluation"""

    def __post_init__(self) -> None:
        self.lora_target_modules = tuple(self.lora_target_modules)
        for name in ("updates", "threads", "batch_size", "num_minibatches", "ppo_epochs", "max_new_tokens",
                     "lora_r", "lora_alpha", "eval_samples"):
            if not getattr(self, name) >= 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)!r}")
        if self.updates < 2:
            raise ValueError(f"--updates must be >= 2 (the first update is a warm-up), got {self.updates}")
        if self.batch_size % self.num_minibatches:
            raise ValueError(f"--batch-size ({self.batch_size}) must be a multiple of --num-minibatches "
                             f"({self.num_minibatches}) (TRL needs equal minibatches)")
        if not (self.learning_rate > 0 and self.temperature > 0 and self.kl_coef >= 0):
            raise ValueError("--lr and --temperature must be > 0 and --kl-coef >= 0")
        if self.trl_critic not in ("full", "lora"):
            raise ValueError(f"--trl-critic must be 'full' or 'lora', got {self.trl_critic!r}")


# ================================================================================================================
# Parent: install TRL 1.12.0 aside, run the workers alternately, summarise.
# ================================================================================================================


def ensure_trl(target: Path) -> Path:
    """TRL 1.12.0 in its own directory (installed with pip --target --no-deps if missing); checks its requirements."""
    dist_info = target / f"trl-{TRL_VERSION}.dist-info"
    if not (dist_info.is_dir() and (target / "trl" / "__init__.py").is_file()):
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--upgrade", "--target", str(target),
                   "--no-deps", f"trl=={TRL_VERSION}"]
        print(f"[setup] installing trl=={TRL_VERSION} into {target} (the venv's own trl is left alone):\n"
              f"        {' '.join(command)}", flush=True)
        subprocess.run(command, check=True)
    else:
        print(f"[setup] using trl {TRL_VERSION} from {target}", flush=True)
    check_requirements(dist_info / "METADATA", extras=("peft",))
    print("[setup] its requirements (core + peft extra) are satisfied by this environment", flush=True)
    return target


def check_requirements(metadata_file: Path, extras: tuple[str, ...] = ()) -> None:
    """Raise if a requirement of a side-installed package (core + the given extras) is missing or too old here."""
    from packaging.requirements import Requirement

    problems = []
    for line in metadata_file.read_text().splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        requirement = Requirement(line.removeprefix("Requires-Dist:").strip())
        needed = requirement.marker is None or any(requirement.marker.evaluate({"extra": e}) for e in ("", *extras))
        if not needed:
            continue
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{requirement} (not installed)")
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            problems.append(f"{requirement} (installed: {installed})")
    if problems:
        raise RuntimeError(f"{metadata_file.parent.name} needs packages this environment does not satisfy: "
                           f"{'; '.join(problems)}")


def run_worker(library: str, settings: BenchSettings, seed: int, trl_dir: Path, work_dir: Path) -> dict:
    """One benchmark run in a fresh subprocess -> its result dict (its stderr streams through)."""
    spec_file, result_file = work_dir / f"spec-{library}-{seed}.json", work_dir / f"result-{library}-{seed}.json"
    spec_file.write_text(json.dumps({"settings": dataclasses.asdict(settings), "seed": seed,
                                     "trl_dir": str(trl_dir), "result_file": str(result_file)}))
    threads = str(settings.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "TRL_EXPERIMENTAL_SILENCE": "1", "PYTHONHASHSEED": "0"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", library, str(spec_file)],
                          env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0 or not result_file.is_file():
        raise RuntimeError(f"the {library} run (seed {seed}) failed with exit code {proc.returncode}; "
                           f"its stdout ended with:\n{proc.stdout[-3000:]}")
    result = json.loads(result_file.read_text())
    result["subprocess_wall_s"] = time.perf_counter() - start
    return result


def summarise(runs: list[dict], updates: int) -> dict:
    """Per-library medians/means over repeats, rlxf/TRL ratios and whether the targets are met."""
    last_k = max(1, updates // 4)
    summary = {}
    for library in LIBRARIES:
        mine = [r for r in runs if r["library"] == library]
        timed = [r["updates"][1:] for r in mine]  # after the warm-up update
        eval_after = [s for r in mine for s in r["eval_after"]["scores"]]
        summary[library] = {
            "s_per_update": statistics.median(statistics.median(u["seconds"] for u in t) for t in timed),
            "generation_s": statistics.median(statistics.median(u["generation_s"] for u in t) for t in timed),
            "scoring_s": statistics.median(statistics.median(u["scoring_s"] for u in t) for t in timed),
            "gc_s": statistics.median(statistics.median(u["gc_s"] for u in t) for t in timed),
            "tokens_per_s": statistics.median(sum(u["response_tokens"] for u in t) / sum(u["seconds"] for u in t)
                                              for t in timed),
            "peak_rss_mb": statistics.median(r["memory"]["peak_rss_mb"] for r in mine),
            "train_peak_rss_mb": statistics.median(r["memory"]["train_peak_rss_mb"] for r in mine),
            "baseline_rss_mb": statistics.median(r["memory"]["after_imports_rss_mb"] for r in mine),
            "train_reward_last": statistics.fmean(statistics.fmean(u["reward_mean"] for u in r["updates"][-last_k:])
                                                  for r in mine),
            "eval_reward_before": statistics.fmean(r["eval_before"]["mean"] for r in mine),
            "eval_reward_after": statistics.fmean(eval_after),
            "eval_reward_after_var": statistics.variance(eval_after) if len(eval_after) > 1 else 0.0,
            "eval_reward_after_n": len(eval_after),
            "trainable_parameters": mine[0]["trainable_parameters"],
        }
    ours, theirs = summary["rlxf"], summary["trl"]
    reward_diff = ours["eval_reward_after"] - theirs["eval_reward_after"]
    reward_se = math.sqrt(ours["eval_reward_after_var"] / ours["eval_reward_after_n"]
                          + theirs["eval_reward_after_var"] / theirs["eval_reward_after_n"])
    ratios = {
        "time_ratio": ours["s_per_update"] / theirs["s_per_update"],
        "peak_rss_ratio": ours["peak_rss_mb"] / theirs["peak_rss_mb"],
        "train_peak_rss_ratio": ours["train_peak_rss_mb"] / theirs["train_peak_rss_mb"],
        "tokens_per_s_ratio": ours["tokens_per_s"] / theirs["tokens_per_s"],
        "eval_reward_diff": reward_diff,
        "eval_reward_diff_se": reward_se,
    }
    targets = {
        "time": ratios["time_ratio"] <= TARGETS["time_ratio"],
        "peak_memory": ratios["peak_rss_ratio"] <= TARGETS["peak_rss_ratio"],
        "reward_no_worse": reward_diff >= 0,
    }
    return {"per_library": summary, "ratios": ratios, "targets_met": targets, "train_reward_last_k": last_k}


def consistency_checks(runs: list[dict]) -> list[str]:
    """Problems that would make the comparison unfair: different reward model, EOS or prompts between libraries."""
    problems = []
    for key in ("reward_probe", "prompt_token_counts", "eos_token_ids"):
        values = {json.dumps(r[key]) for r in runs}
        if len(values) > 1:
            problems.append(f"{key} differs between runs: {sorted(values)}")
    by_seed: dict[int, list[str]] = {}
    for r in runs:
        by_seed.setdefault(r["seed"], []).append(r["eval_before"]["tokens_sha1"])
    for seed, before in by_seed.items():  # same untrained policy (LoRA B = 0), same sampling seed: same replies
        if len(set(before)) > 1:
            problems.append(f"seed {seed}: the replies sampled before training differ between libraries")
    for r in runs:
        if not r["lora_b_norm_after"] > 0:
            problems.append(f"{r['library']} seed {r['seed']}: the LoRA adapter did not change in training")
    for r in runs:
        if r.get("scoring_check_max_abs_diff", 0.0) > 1e-3:
            problems.append(f"{r['library']} seed {r['seed']}: TRL's reward scores differ from the shared scoring by "
                            f"{r['scoring_check_max_abs_diff']:.2e}")
    return problems


def format_table(result: dict) -> str:
    """The comparison as a plain-text table."""
    per_library, ratios, met = result["per_library"], result["ratios"], result["targets_met"]
    header = (f"{'library':<12}{'s/update':>10}{'gen s':>8}{'score s':>9}{'peak RSS MB':>13}{'train-peak MB':>15}"
              f"{'train reward':>14}{'eval reward before -> after':>30}{'tokens/s':>10}{'trainable':>12}")
    lines = [header, "-" * len(header)]
    for library in LIBRARIES:
        s = per_library[library]
        name = "rlxf" if library == "rlxf" else f"trl {TRL_VERSION}"
        lines.append(f"{name:<12}{s['s_per_update']:>10.3f}{s['generation_s']:>8.3f}{s['scoring_s']:>9.3f}"
                     f"{s['peak_rss_mb']:>13.0f}{s['train_peak_rss_mb']:>15.0f}{s['train_reward_last']:>14.3f}"
                     f"{s['eval_reward_before']:>19.3f} -> {s['eval_reward_after']:>6.3f}{s['tokens_per_s']:>10.1f}"
                     f"{s['trainable_parameters']:>12,}")
    lines += [
        "",
        f"rlxf/TRL time per update  {ratios['time_ratio']:.3f}  (target <= {TARGETS['time_ratio']}: "
        f"{'met' if met['time'] else 'NOT met'})",
        f"rlxf/TRL peak RSS         {ratios['peak_rss_ratio']:.3f}  (target <= {TARGETS['peak_rss_ratio']}: "
        f"{'met' if met['peak_memory'] else 'NOT met'}); training phase only: {ratios['train_peak_rss_ratio']:.3f}; "
        f"after imports: rlxf {per_library['rlxf']['baseline_rss_mb']:.0f} MB, "
        f"TRL {per_library['trl']['baseline_rss_mb']:.0f} MB",
        f"rlxf/TRL tokens/s         {ratios['tokens_per_s_ratio']:.3f}",
        f"gc.collect() per update   rlxf {per_library['rlxf']['gc_s']:.3f} s, TRL {per_library['trl']['gc_s']:.3f} s "
        "(TRL collects twice per update; counted in its time)",
        f"eval reward rlxf - TRL    {ratios['eval_reward_diff']:+.3f} +- {ratios['eval_reward_diff_se']:.3f} (s.e.)  "
        f"(target >= 0: {'met' if met['reward_no_worse'] else 'NOT met'}"
        f"{', within noise' if abs(ratios['eval_reward_diff']) < 2 * ratios['eval_reward_diff_se'] else ''})",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> tuple[BenchSettings, argparse.Namespace]:
    """Command-line settings."""
    defaults = BenchSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=defaults.model, help="rlxf model name or directory (tiny-llama: quick)")
    parser.add_argument("--updates", type=int, default=defaults.updates, help="PPO updates per run (>= 2)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per library, alternating rlxf, TRL, ...")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="torch/OpenMP threads per run")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--num-minibatches", type=int, default=defaults.num_minibatches)
    parser.add_argument("--ppo-epochs", type=int, default=defaults.ppo_epochs)
    parser.add_argument("--lr", type=float, default=defaults.learning_rate)
    parser.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    parser.add_argument("--temperature", type=float, default=defaults.temperature)
    parser.add_argument("--kl-coef", type=float, default=defaults.kl_coef)
    parser.add_argument("--trl-critic", choices=("full", "lora"), default=defaults.trl_critic,
                        help="TRL's value model: full fine-tuning (TRL's setup) or LoRA on the same modules + head")
    parser.add_argument("--eval-samples", type=int, default=defaults.eval_samples, help="samples per prompt")
    parser.add_argument("--trl-dir", type=Path, default=None, help="where TRL 1.12.0 lives (default artifacts/)")
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default artifacts/benchmarks/)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    try:
        settings = BenchSettings(model=args.model, updates=args.updates, threads=args.threads, seed=args.seed,
                                 batch_size=args.batch_size, num_minibatches=args.num_minibatches,
                                 ppo_epochs=args.ppo_epochs, learning_rate=args.lr,
                                 max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                 kl_coef=args.kl_coef, trl_critic=args.trl_critic, eval_samples=args.eval_samples)
    except ValueError as error:
        parser.error(str(error))
    return settings, args


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; print the table; write the JSON; return the results."""
    from rlxf.paths import artifacts_dir

    settings, args = parse_args(argv)
    out = args.out or artifacts_dir() / "benchmarks" / "ppo_vs_trl.json"
    trl_dir = ensure_trl((args.trl_dir or artifacts_dir() / f"trl-{TRL_VERSION}").resolve())
    started = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory(prefix="ppo_vs_trl-") as work_dir:
        for repeat in range(args.repeats):
            for library in LIBRARIES:
                seed = settings.seed + repeat
                print(f"[run] repeat {repeat + 1}/{args.repeats}: {library} (seed {seed}, {settings.updates} updates, "
                      f"{settings.threads} thread(s))", flush=True)
                run = run_worker(library, settings, seed, trl_dir, Path(work_dir))
                print(f"[run]   {library}: {run['subprocess_wall_s']:.1f} s wall, per update "
                      f"{[round(u['seconds'], 3) for u in run['updates']]} s", flush=True)
                runs.append(run)
    result = {"settings": dataclasses.asdict(settings), "repeats": args.repeats, "trl_dir": str(trl_dir),
              **summarise(runs, settings.updates), "consistency_problems": consistency_checks(runs),
              "wall_s": time.perf_counter() - started, "runs": runs}
    print("\n" + format_table(result))
    for problem in result["consistency_problems"]:
        print(f"WARNING (fairness): {problem}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {out}  (total {result['wall_s']:.0f} s)")
    return result


# ================================================================================================================
# Workers: shared pieces (models, prompts, scoring, evaluation, memory), then one function per library.
# ================================================================================================================


class PeakRSS:
    """Sample this process's resident memory in a background thread; `.peak_mb` is the highest value seen."""

    def __init__(self, interval_s: float = 0.02):
        self.interval_s, self.peak_mb = interval_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, current_rss_mb())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, current_rss_mb())


def current_rss_mb() -> float:
    """Resident set size of this process in MiB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def max_rss_mb() -> float:
    """Peak resident set size of this process over its whole life in MiB (getrusage)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def set_all_seeds(seed: int) -> None:
    """Seed python, numpy and torch."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_task(settings: BenchSettings):
    """(policy, tokenizer, reward_model, prompt_ids): the same objects in every worker."""
    import torch

    from rlxf.models import load_causal_lm, load_classifier

    policy, tokenizer = load_causal_lm(settings.model, device="cpu", dtype="fp32")
    reward_model, reward_tokenizer = load_classifier(settings.model, num_labels=1, device="cpu", dtype="fp32")
    if reward_tokenizer.get_vocab() != tokenizer.get_vocab() or reward_tokenizer.pad_token_id != tokenizer.pad_token_id:
        raise ValueError(f"{settings.model}: the reward model's tokenizer differs from the policy's (TRL needs one)")
    if not hasattr(reward_model, "score") or reward_model.score.out_features != 1:
        raise ValueError(f"{settings.model}: expected a decoder classifier with a 1-output `score` head, got "
                         f"{type(reward_model).__name__}")
    # A fixed random direction in hidden space: a reward both libraries can push, identical in every process.
    generator = torch.Generator().manual_seed(REWARD_HEAD_SEED)
    hidden = reward_model.score.in_features
    with torch.no_grad():
        reward_model.score.weight.copy_(torch.randn(1, hidden, generator=generator) / math.sqrt(hidden))
    reward_model.requires_grad_(False)
    return policy, tokenizer, reward_model, prompt_token_ids(tokenizer, settings.batch_size)


def prompt_token_ids(tokenizer, n: int) -> list[list[int]]:
    """The review openings as chat prompts (or plain text without a chat template), tokenised once for both."""
    prompts = []
    for i in range(n):
        opening = REVIEW_OPENINGS[i % len(REVIEW_OPENINGS)]
        if tokenizer.chat_template:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": f"Continue this movie review in one or two sentences: {opening}"}],
                tokenize=False, add_generation_prompt=True)
            prompts.append(tokenizer(text, add_special_tokens=False)["input_ids"])
        else:
            prompts.append(tokenizer(opening)["input_ids"])
    return prompts


def score_responses(reward_model, queries, responses, pad_id: int):
    """Reward-model score of each query + response at its last token (TRL's get_reward on the same tokens)."""
    import torch

    from rlxf.generation import collate

    batch = collate([torch.as_tensor(q) for q in queries], [torch.as_tensor(r) for r in responses], pad_id)
    with torch.no_grad():
        hidden = reward_model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                    position_ids=batch["position_ids"], use_cache=False).last_hidden_state
        last = batch["input_ids"].shape[1] - batch["response_mask"].shape[1] + batch["response_mask"].sum(1).long() - 1
        return reward_model.score(hidden[torch.arange(len(queries)), last]).squeeze(-1)


def response_tokens(generated, eos_id: int) -> list:
    """Generated rows cut after the first EOS (kept); rows without EOS are kept whole."""
    import torch

    cut = []
    for row in generated:
        is_eos = row == eos_id
        cut.append(row[: int(is_eos.nonzero()[0]) + 1] if is_eos.any() else row)
    return [torch.as_tensor(r) for r in cut]


def evaluate(model, tokenizer, reward_model, prompt_ids, settings: BenchSettings, seed: int) -> dict:
    """Mean reward of `eval_samples` sampled replies per prompt: the same code, seed and sampling for both libraries."""
    import torch
    from transformers import GenerationConfig

    from rlxf.generation import collate

    queries = [torch.tensor(p) for p in prompt_ids for _ in range(settings.eval_samples)]
    batch = collate(queries, [q[:0] for q in queries], tokenizer.pad_token_id)
    generation = GenerationConfig(do_sample=True, max_new_tokens=settings.max_new_tokens,
                                  temperature=settings.temperature, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0,
                                  repetition_penalty=1.0, no_repeat_ngram_size=0, use_cache=True,
                                  pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    was_training = model.training
    model.eval()
    torch.manual_seed(seed + EVAL_SEED_OFFSET)
    with torch.no_grad():
        output = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                generation_config=generation)
    model.train(was_training)
    responses = response_tokens(output[:, batch["input_ids"].shape[1]:], tokenizer.eos_token_id)
    scores = score_responses(reward_model, queries, responses, tokenizer.pad_token_id).tolist()
    digest = hashlib.sha1(b"|".join(bytes(str(r.tolist()), "ascii") for r in responses)).hexdigest()
    return {"mean": statistics.fmean(scores), "scores": scores,
            "mean_length": statistics.fmean(len(r) for r in responses), "tokens_sha1": digest}


def lora_b_norm(model) -> float:
    """Norm of all LoRA B matrices: they start at zero, so this is how far training moved the adapter."""
    return math.sqrt(sum(float(p.detach().pow(2).sum()) for n, p in model.named_parameters() if "lora_B" in n))


def common_record(library: str, settings: BenchSettings, seed: int, tokenizer, reward_model, prompt_ids) -> dict:
    """Fields every worker reports (and the parent compares across libraries)."""
    import torch

    probe = score_responses(reward_model, [torch.tensor(p) for p in prompt_ids],
                            [torch.tensor(tokenizer("It was great.", add_special_tokens=False)["input_ids"])]
                            * len(prompt_ids), tokenizer.pad_token_id)
    trl = sys.modules.get("trl")
    return {"library": library, "seed": seed, "threads": torch.get_num_threads(),
            "versions": {"torch": torch.__version__, "transformers": importlib.metadata.version("transformers"),
                         "peft": importlib.metadata.version("peft"),
                         "trl": getattr(trl, "__version__", None), "trl_path": getattr(trl, "__file__", None)},
            "reward_probe": [round(x, 5) for x in probe.tolist()],
            "prompt_token_counts": [len(p) for p in prompt_ids]}


def rlxf_worker(settings: BenchSettings, seed: int) -> dict:
    """rlxf.ppo: generate -> score -> step, `updates` times, each phase timed."""
    from rlxf.ppo import PPOSettings, PPOTrainer

    after_imports = current_rss_mb()
    policy, tokenizer, reward_model, prompt_ids = load_task(settings)
    config = PPOSettings(learning_rate=settings.learning_rate, batch_size=settings.batch_size,
                         num_minibatches=settings.num_minibatches, ppo_epochs=settings.ppo_epochs,
                         max_grad_norm=math.inf,  # TRL's PPO loop never clips gradients
                         kl_estimator="k1", adaptive_kl=False, init_kl_coef=settings.kl_coef,
                         max_new_tokens=settings.max_new_tokens, temperature=settings.temperature, top_k=0, top_p=1.0,
                         lora_r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=0.0,
                         lora_target_modules=settings.lora_target_modules, seed=seed, progress_bar=False)
    trainer = PPOTrainer(policy, tokenizer, config)
    record = common_record("rlxf", settings, seed, tokenizer, reward_model, prompt_ids)
    record["eos_token_ids"] = sorted(trainer.eos_ids)
    record["trainable_parameters"] = sum(p.numel() for p in trainer.policy_params) + sum(
        p.numel() for p in trainer.value_head.parameters())
    record["eval_before"] = evaluate(trainer.model, tokenizer, reward_model, prompt_ids, settings, seed)
    set_all_seeds(seed)

    updates = []
    with PeakRSS() as train_peak:
        for _ in range(settings.updates):
            start = time.perf_counter()
            queries, responses, _ = trainer.generate(prompt_ids)
            generated = time.perf_counter()
            scores = score_responses(reward_model, queries, responses, tokenizer.pad_token_id)
            scored = time.perf_counter()
            metrics = trainer.step(queries, responses, scores)
            done = time.perf_counter()
            updates.append({"seconds": done - start, "generation_s": generated - start, "scoring_s": scored - generated,
                            "reward_mean": float(scores.mean()), "kl": metrics["objective/kl"],
                            "response_tokens": sum(len(r) for r in responses), "gc_s": 0.0})
    record["updates"] = updates
    record["eval_after"] = evaluate(trainer.model, tokenizer, reward_model, prompt_ids, settings, seed)
    record["lora_b_norm_after"] = lora_b_norm(trainer.model)
    record["memory"] = {"after_imports_rss_mb": after_imports, "train_peak_rss_mb": train_peak.peak_mb,
                        "peak_rss_mb": max_rss_mb()}
    return record


def trl_worker(settings: BenchSettings, seed: int, trl_dir: str) -> dict:
    """TRL 1.12.0's experimental PPOTrainer on the same task; updates timed by callbacks, its helpers wrapped."""
    import trl
    from datasets import Dataset
    from peft import LoraConfig, inject_adapter_in_model
    from transformers import TrainerCallback
    from trl.experimental.ppo import PPOConfig, PPOTrainer
    from trl.experimental.ppo import ppo_trainer as ppo_module

    if trl.__version__ != TRL_VERSION or not Path(trl.__file__).resolve().is_relative_to(Path(trl_dir).resolve()):
        raise RuntimeError(f"expected trl {TRL_VERSION} from {trl_dir}, imported {trl.__version__} from {trl.__file__}")
    after_imports = current_rss_mb()
    policy, tokenizer, reward_model, prompt_ids = load_task(settings)
    value_model = load_value_model(settings, inject_adapter_in_model, LoraConfig)
    peft_config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=0.0, bias="none",
                             target_modules=list(settings.lora_target_modules), task_type="CAUSAL_LM")
    output_dir = tempfile.mkdtemp(prefix="trl-ppo-")
    args = PPOConfig(
        output_dir=output_dir, seed=seed, use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
        per_device_train_batch_size=settings.batch_size, gradient_accumulation_steps=1,
        num_mini_batches=settings.num_minibatches, num_ppo_epochs=settings.ppo_epochs,
        total_episodes=settings.updates * settings.batch_size, learning_rate=settings.learning_rate,
        lr_scheduler_type="constant", optim="adamw_torch", adam_epsilon=1e-5, weight_decay=0.0,  # as rlxf's AdamW
        response_length=settings.max_new_tokens, temperature=settings.temperature, stop_token="eos",
        kl_coef=settings.kl_coef, kl_estimator="k1", missing_eos_penalty=None,
        num_sample_generations=0, logging_steps=1, report_to="none", save_strategy="no", disable_tqdm=True,
        dataloader_num_workers=0)

    clock = UpdateClock()
    dataset = Dataset.from_dict({"input_ids": prompt_ids})
    set_all_seeds(seed)
    trainer = PPOTrainer(args=args, processing_class=tokenizer, model=policy, ref_model=None,
                         reward_model=reward_model, train_dataset=dataset, value_model=value_model,
                         peft_config=peft_config, callbacks=[clock(TrainerCallback)])
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    record = common_record("trl", settings, seed, tokenizer, reward_model, prompt_ids)
    record["eos_token_ids"] = [trainer.stop_token_id]
    record["trainable_parameters"] = sum(p.numel() for p in unwrapped.parameters() if p.requires_grad)
    record["eval_before"] = evaluate(unwrapped.policy, tokenizer, reward_model, prompt_ids, settings, seed)

    # Measure generation and scoring inside TRL's loop by wrapping the two module-level helpers it calls.
    phases = {"generation_s": [], "scoring_s": [], "response_tokens": [], "scores": [], "check": [], "gc_s": []}
    batch_generation, get_reward = ppo_module.batch_generation, ppo_module.get_reward

    def timed_generation(model, queries, *rest, **kwargs):
        start = time.perf_counter()
        query_responses, logits = batch_generation(model, queries, *rest, **kwargs)
        phases["generation_s"].append(time.perf_counter() - start)
        generated = query_responses[:, queries.shape[1]:]
        phases["response_tokens"].append(sum(len(r) for r in response_tokens(generated, tokenizer.eos_token_id)))
        return query_responses, logits

    def timed_reward(model, query_responses, pad_token_id, context_length):
        start = time.perf_counter()
        out = get_reward(model, query_responses, pad_token_id, context_length)
        if model is reward_model:  # the other call scores the critic
            phases["scoring_s"].append(time.perf_counter() - start)
            phases["scores"].append(out[1].tolist())
            if len(phases["check"]) == 0:  # once (warm-up update): TRL's scoring equals the shared one
                phases["check"].append(scoring_difference(reward_model, query_responses, out[1], pad_token_id,
                                                          context_length))
        return out

    collect = gc.collect

    def timed_collect(*args, **kwargs):  # TRL runs a full garbage collection twice per update: report its cost
        start = time.perf_counter()
        try:
            return collect(*args, **kwargs)
        finally:
            phases["gc_s"].append((len(clock.marks), time.perf_counter() - start))

    ppo_module.batch_generation, ppo_module.get_reward, gc.collect = timed_generation, timed_reward, timed_collect
    set_all_seeds(seed)
    try:
        with PeakRSS() as train_peak:
            trainer.train()
    finally:
        ppo_module.batch_generation, ppo_module.get_reward, gc.collect = batch_generation, get_reward, collect

    if not (len(clock.marks) == settings.updates + 1 == len(phases["scores"]) + 1):
        raise RuntimeError(f"TRL ran {len(clock.marks) - 1} updates ({len(phases['scores'])} scored), expected "
                           f"{settings.updates}")
    kls = [log["objective/kl"] for log in clock.logs if "objective/kl" in log]
    record["updates"] = [
        {"seconds": clock.marks[i + 1] - clock.marks[i], "generation_s": phases["generation_s"][i],
         "scoring_s": phases["scoring_s"][i], "reward_mean": statistics.fmean(phases["scores"][i]),
         "kl": kls[i] if i < len(kls) else None, "response_tokens": phases["response_tokens"][i],
         "gc_s": sum(seconds for update, seconds in phases["gc_s"] if update == i + 1)}
        for i in range(settings.updates)]
    record["scoring_check_max_abs_diff"] = phases["check"][0]
    record["eval_after"] = evaluate(unwrapped.policy, tokenizer, reward_model, prompt_ids, settings, seed)
    record["lora_b_norm_after"] = lora_b_norm(unwrapped.policy)
    record["memory"] = {"after_imports_rss_mb": after_imports, "train_peak_rss_mb": train_peak.peak_mb,
                        "peak_rss_mb": max_rss_mb()}
    shutil.rmtree(output_dir, ignore_errors=True)
    return record


def load_value_model(settings: BenchSettings, inject_adapter_in_model, lora_config_class):
    """TRL's critic: the base under a zero value head (as rlxf's), fully trainable or LoRA + head."""
    import torch

    from rlxf.models import load_classifier

    value_model, _ = load_classifier(settings.model, num_labels=1, device="cpu", dtype="fp32")
    with torch.no_grad():
        value_model.score.weight.zero_()  # values start at 0, as rlxf's zero-initialised value head
    if settings.trl_critic == "lora":
        config = lora_config_class(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=0.0, bias="none",
                                   target_modules=list(settings.lora_target_modules))
        value_model = inject_adapter_in_model(config, value_model)  # in place: TRL needs `.model` and `.score`
        for name, param in value_model.named_parameters():
            param.requires_grad_("lora_" in name or name.startswith("score."))
    return value_model


def scoring_difference(reward_model, query_responses, trl_scores, pad_id: int, context_length: int) -> float:
    """Largest |TRL's reward-model score - the shared `score_responses`| on the same token sequences."""
    queries = [row[:context_length][row[:context_length] != pad_id] for row in query_responses]
    responses = [row[context_length:][row[context_length:] != pad_id] for row in query_responses]
    ours = score_responses(reward_model, queries, responses, pad_id)
    return float((ours - trl_scores).abs().max())


class UpdateClock:
    """A TRL callback factory: perf_counter marks at train begin and after every update, and the logged metrics."""

    def __init__(self):
        self.marks: list[float] = []
        self.logs: list[dict] = []

    def __call__(self, callback_base):
        clock = self

        class _Clock(callback_base):
            def on_train_begin(self, args, state, control, **kwargs):
                clock.marks.append(time.perf_counter())

            def on_step_end(self, args, state, control, **kwargs):
                clock.marks.append(time.perf_counter())

            def on_log(self, args, state, control, logs=None, **kwargs):
                clock.logs.append(dict(logs or {}))

        return _Clock()


def worker_main(library: str, spec_file: str) -> None:
    """Entry of a worker subprocess: read the spec, run one library, write the result JSON."""
    spec = json.loads(Path(spec_file).read_text())
    settings = BenchSettings(**spec["settings"])
    if library == "trl":
        sys.path.insert(0, spec["trl_dir"])  # before anything imports trl: this process sees TRL 1.12.0 only
    import torch

    torch.set_num_threads(settings.threads)
    # The stack both libraries need, imported before the baseline RSS is read: the baselines then differ only by
    # what each library itself imports (rlxf.ppo, or trl with datasets/pandas/accelerate).
    for module in ("transformers", "peft", "rlxf.models"):
        importlib.import_module(module)
    record = (rlxf_worker(settings, spec["seed"]) if library == "rlxf"
              else trl_worker(settings, spec["seed"], spec["trl_dir"]))
    record["settings"] = dataclasses.asdict(settings)
    Path(spec["result_file"]).write_text(json.dumps(record))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker" and sys.argv[2] in LIBRARIES:
        worker_main(sys.argv[2], sys.argv[3])
    else:
        main()
