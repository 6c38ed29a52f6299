"""rlxf.ppo vs TRL 1.12.0's experimental PPOTrainer: seconds per update, peak memory and reward on one LoRA-PPO task.

    python benchmarks/ppo_vs_trl.py [--model smollm2-135m-instruct] [--updates 8] [--repeats 2] [--threads 2]

Both libraries get the same policy (LoRA r=8 on q_proj/v_proj), the same 4 chat prompts, the same reward model (the
base under a seeded linear head, `load_classifier(model, num_labels=1)`), the same sampling (temperature, top_k=0,
top_p=1, at most `max_new_tokens`, stop at the tokenizer's EOS, which is kept and scored), 4 PPO epochs on one
minibatch of 4, AdamW at a constant lr, a fixed KL coefficient (k1), fp32, CPU, the same thread count.
Each run is a fresh subprocess (rlxf, TRL, rlxf, TRL, ...) started by `rlxf.memory.peak_memory`, so its peak memory is
its own and is the measure used everywhere in rlxf: the process's VmHWM (the workers run on CPU, with CUDA hidden).
TRL 1.12.0 is installed with `pip --target` into its own directory (the venv's trl 1.16 is untouched) and put first
on `sys.path` of TRL runs only. The workers live in `benchmarks/workers/`.

An update is generation + reward scoring + the PPO step, for both: rlxf's loop is `generate` -> score -> `step`,
timed by its worker; TRL owns its loop, so an update is the time between its `on_step_end` callbacks (which also
covers its per-update logging and gc.collect()). The first update is a warm-up and is left out of the medians.
Reward: the training batches' reward-model scores (mean over the last quarter of the updates) and an evaluation
done identically for both (same sampling code, seed and reward model) before and after training.
Results: a table on stdout and `artifacts/benchmarks/ppo_vs_trl.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: make `rlxf` and `benchmarks` importable without installing
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.workers.settings import TRL_VERSION, BenchSettings  # noqa: E402  (after the path above)

LIBRARIES = ("rlxf", "trl")
TARGETS = {"time_ratio": 0.5, "peak_rss_ratio": 0.6}


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


def run_worker(library: str, settings: BenchSettings, seed: int, trl_dir: Path) -> dict:
    """One benchmark run in a fresh subprocess, measured by rlxf.memory.peak_memory -> its result dict."""
    from rlxf.memory import peak_memory

    threads = str(settings.threads)
    python_path = [str(trl_dir)] if library == "trl" else []  # before anything imports trl: TRL 1.12.0 only
    python_path += [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "TRL_EXPERIMENTAL_SILENCE": "1", "PYTHONHASHSEED": "0",
           "CUDA_VISIBLE_DEVICES": "",  # a CPU benchmark: peak_memory then measures the process's VmHWM, not CUDA's
           "PYTHONPATH": os.pathsep.join(p for p in python_path if p)}
    kwargs = {"settings": dataclasses.asdict(settings), "seed": seed, **({"trl_dir": str(trl_dir)} if library == "trl"
                                                                          else {})}
    start = time.perf_counter()
    try:
        measured = peak_memory(f"benchmarks.workers.{library}_worker:run", kwargs, env=env)
    except RuntimeError as error:
        raise RuntimeError(f"the {library} run (seed {seed}) failed: {error}") from error
    result = measured["result"]
    if result["memory"]["measure"] != measured["measure"]:
        raise RuntimeError(f"the {library} run measured its training phase by {result['memory']['measure']} but the "
                           f"whole run by {measured['measure']}")
    result["memory"].update(after_imports_rss_mb=measured["baseline_bytes"] / 2**20,
                            peak_rss_mb=measured["peak_bytes"] / 2**20)
    result["settings"] = dataclasses.asdict(settings)
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
    for repeat in range(args.repeats):
        for library in LIBRARIES:
            seed = settings.seed + repeat
            print(f"[run] repeat {repeat + 1}/{args.repeats}: {library} (seed {seed}, {settings.updates} updates, "
                  f"{settings.threads} thread(s))", flush=True)
            run = run_worker(library, settings, seed, trl_dir)
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


if __name__ == "__main__":
    main()
