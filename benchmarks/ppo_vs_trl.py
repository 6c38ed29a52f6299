"""rlxf.algos.ppo vs TRL 1.12.0's experimental PPOTrainer: where the time of an update goes, peak memory and reward.

    python benchmarks/ppo_vs_trl.py [--model smollm2-135m-instruct] [--updates 8] [--repeats 2] [--threads 2]
                                    [--dtype auto|fp32|bf16] [--trl-critics full,lora] [--out PATH]

Both libraries get the same policy (LoRA r=8 on q_proj/v_proj), the same 4 chat prompts, the same reward model (the
base under a seeded linear head, `load_classifier(model, num_labels=1)`), the same sampling (temperature, top_k=0,
top_p=1, at most `max_new_tokens`, stop at the tokenizer's EOS, which is kept and scored), 4 PPO epochs on one
minibatch of 4, AdamW at a constant lr, a fixed KL coefficient (k1), one compute precision (`--dtype`, resolved once
by `rlxf.lm.precision.precision` on this CPU), CPU, the same thread count. TRL runs once per critic in `--trl-critics`
("full": a fully trainable value model, TRL's setup; "lora": LoRA + head); the headline ratios are against "lora".
Each run is a fresh subprocess (rlxf, TRL full, TRL lora, rlxf, ...) started by `rlxf.infra.memory.peak_memory`, so its
peak memory is its own and is the measure used everywhere in rlxf: the process's VmHWM (the workers run on CPU, with
CUDA hidden).
TRL 1.12.0 is installed with `pip --target` into its own directory (the venv's trl 1.16 is untouched) and put first
on `sys.path` of TRL runs only. The workers live in `benchmarks/workers/`.

An update is generation + reward scoring + the PPO step, for both: rlxf's loop is `generate` -> score -> `step`,
timed by its worker; TRL owns its loop, so an update is the time between its `on_step_end` callbacks (which also
covers its per-update logging and gc.collect()). The first update is a warm-up and is left out of the medians.
Phases of an update: generation, rollout forwards (policy, reference, TRL's critic), scoring, optimisation (the PPO
epochs) and the rest. rlxf's update phase (its PPO epochs) is also given in model GFLOP/s (counted from the model's
shapes, `benchmarks/workers/flops.py`) and as a fraction of this machine's matmul peak in the same dtype, measured in
the rlxf worker's process after training.
Reward: the training batches' reward-model scores (mean over the last quarter of the updates) and an evaluation
done identically for both (same sampling code, seed and reward model) before and after training.
Results: tables on stdout and `--out` (default `artifacts/benchmarks/ppo_vs_trl.json`).
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

from benchmarks.workers.settings import CRITICS, TRL_VERSION, BenchSettings  # noqa: E402  (after the path above)

TARGETS = {"time_ratio": 0.45, "peak_rss_ratio": 0.55, "update_peak_fraction": 0.55}  # issue 25 raised them
HEADLINE_CRITIC = "lora"  # the ratios the targets are about: against TRL with a LoRA critic
# Phases of an update (seconds); "other_s" is the update's time minus the rest (TRL: GAE, gc.collect(), logging).
PHASES = ("generation_s", "rollout_policy_s", "rollout_ref_s", "rollout_value_s", "scoring_s", "optimise_s", "other_s")


def variants(settings: BenchSettings) -> list[str]:
    """The runs of one repeat, in order: rlxf, then TRL with each critic."""
    return ["rlxf", *(f"trl-{critic}" for critic in settings.trl_critics)]


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


def run_worker(variant: str, settings: BenchSettings, seed: int, trl_dir: Path) -> dict:
    """One benchmark run ("rlxf", "trl-full" or "trl-lora") in a fresh subprocess, measured by
    rlxf.infra.memory.peak_memory -> its result dict."""
    from rlxf.infra.memory import peak_memory

    library, _, critic = variant.partition("-")
    threads = str(settings.threads)
    python_path = [str(trl_dir)] if library == "trl" else []  # before anything imports trl: TRL 1.12.0 only
    python_path += [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "TRL_EXPERIMENTAL_SILENCE": "1", "PYTHONHASHSEED": "0",
           "CUDA_VISIBLE_DEVICES": "",  # a CPU benchmark: peak_memory then measures the process's VmHWM, not CUDA's
           "PYTHONPATH": os.pathsep.join(p for p in python_path if p)}
    kwargs = {"settings": dataclasses.asdict(settings), "seed": seed,
              **({"trl_dir": str(trl_dir), "critic": critic} if library == "trl" else {})}
    start = time.perf_counter()
    try:
        measured = peak_memory(f"benchmarks.workers.{library}_worker:run", kwargs, env=env)
    except RuntimeError as error:
        raise RuntimeError(f"the {variant} run (seed {seed}) failed: {error}") from error
    result = measured["result"]
    if result["memory"]["measure"] != measured["measure"]:
        raise RuntimeError(f"the {variant} run measured its training phase by {result['memory']['measure']} but the "
                           f"whole run by {measured['measure']}")
    result["memory"].update(after_imports_rss_mb=measured["baseline_bytes"] / 2**20,
                            peak_rss_mb=measured["peak_bytes"] / 2**20)
    result["variant"] = variant
    result["settings"] = dataclasses.asdict(settings)
    result["subprocess_wall_s"] = time.perf_counter() - start
    return result


def phase_seconds(update: dict, phase: str) -> float:
    """Seconds of one phase of one update; "other_s" is what the named phases leave of the update's time."""
    if phase == "other_s":
        return update["seconds"] - sum(update[p] for p in PHASES if p != "other_s")
    return update[phase]


def summarise(runs: list[dict], settings: BenchSettings) -> dict:
    """Per-variant medians/means over repeats, rlxf/TRL ratios per critic and whether the targets are met."""
    last_k = max(1, settings.updates // 4)
    median = statistics.median
    summary = {}
    for variant in variants(settings):
        mine = [r for r in runs if r["variant"] == variant]
        timed = [r["updates"][1:] for r in mine]  # after the warm-up update
        eval_after = [s for r in mine for s in r["eval_after"]["scores"]]
        summary[variant] = {
            "s_per_update": median(median(u["seconds"] for u in t) for t in timed),
            **{phase: median(median(phase_seconds(u, phase) for u in t) for t in timed) for phase in PHASES},
            "gc_s": median(median(u["gc_s"] for u in t) for t in timed),
            "tokens_per_s": median(sum(u["response_tokens"] for u in t) / sum(u["seconds"] for u in t) for t in timed),
            "generation_tokens_per_s": median(sum(u["response_tokens"] for u in t) / sum(u["generation_s"] for u in t)
                                              for t in timed),
            "peak_rss_mb": median(r["memory"]["peak_rss_mb"] for r in mine),
            "train_peak_rss_mb": median(r["memory"]["train_peak_rss_mb"] for r in mine),
            "baseline_rss_mb": median(r["memory"]["after_imports_rss_mb"] for r in mine),
            "train_reward_last": statistics.fmean(statistics.fmean(u["reward_mean"] for u in r["updates"][-last_k:])
                                                  for r in mine),
            "eval_reward_before": statistics.fmean(r["eval_before"]["mean"] for r in mine),
            "eval_reward_after": statistics.fmean(eval_after),
            "eval_reward_after_var": statistics.variance(eval_after) if len(eval_after) > 1 else 0.0,
            "eval_reward_after_n": len(eval_after),
            "trainable_parameters": mine[0]["trainable_parameters"],
        }
        if variant == "rlxf":  # the update phase's model GFLOP/s and its fraction of the measured matmul peak, per run
            achieved = [sum(u["update_flops"] for u in t) / sum(u["optimise_s"] for u in t) / 1e9 for t in timed]
            peaks = [r["matmul_peak"]["gflops"] for r in mine]
            summary[variant].update(update_gflops=median(achieved), peak_gflops=median(peaks),
                                    update_peak_fraction=median(a / p for a, p in zip(achieved, peaks, strict=True)))
            if all("update_ceiling" in r for r in mine):  # the matmuls alone at the update's shapes (flops.py)
                ceilings = [r["update_ceiling"]["gflops"] for r in mine]
                summary[variant].update(
                    ceiling_gflops=median(ceilings),
                    ceiling_peak_fraction=median(c / p for c, p in zip(ceilings, peaks, strict=True)),
                    update_ceiling_fraction=median(a / c for a, c in zip(achieved, ceilings, strict=True)))
    ours = summary["rlxf"]
    ratios, targets = {}, {"update_peak_fraction": ours["update_peak_fraction"] >= TARGETS["update_peak_fraction"]}
    for critic in settings.trl_critics:
        theirs = summary[f"trl-{critic}"]
        reward_diff = ours["eval_reward_after"] - theirs["eval_reward_after"]
        ratios[critic] = {
            "time_ratio": ours["s_per_update"] / theirs["s_per_update"],
            "peak_rss_ratio": ours["peak_rss_mb"] / theirs["peak_rss_mb"],
            "train_peak_rss_ratio": ours["train_peak_rss_mb"] / theirs["train_peak_rss_mb"],
            "tokens_per_s_ratio": ours["tokens_per_s"] / theirs["tokens_per_s"],
            "generation_tokens_per_s_ratio": ours["generation_tokens_per_s"] / theirs["generation_tokens_per_s"],
            "eval_reward_diff": reward_diff,
            "eval_reward_diff_se": math.sqrt(ours["eval_reward_after_var"] / ours["eval_reward_after_n"]
                                             + theirs["eval_reward_after_var"] / theirs["eval_reward_after_n"]),
        }
        targets[critic] = {"time": ratios[critic]["time_ratio"] <= TARGETS["time_ratio"],
                           "peak_memory": ratios[critic]["peak_rss_ratio"] <= TARGETS["peak_rss_ratio"],
                           "reward_no_worse": reward_diff >= 0}
    headline = {f"ratio_{what}_{critic}_critic": ratios[critic][key] if critic in ratios else None
                for critic in CRITICS for what, key in (("time", "time_ratio"), ("memory", "peak_rss_ratio"))}
    return {**headline, "update_peak_fraction": ours["update_peak_fraction"], "update_gflops": ours["update_gflops"],
            "peak_gflops": ours["peak_gflops"], "ceiling_gflops": ours.get("ceiling_gflops"),
            "ceiling_peak_fraction": ours.get("ceiling_peak_fraction"),
            "update_ceiling_fraction": ours.get("update_ceiling_fraction"), "dtype": settings.dtype,
            "generation_tokens_per_s": ours["generation_tokens_per_s"],
            "per_variant": summary, "ratios": ratios, "targets_met": targets, "train_reward_last_k": last_k}


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
            problems.append(f"{r['variant']} seed {r['seed']}: the LoRA adapter did not change in training")
    for r in runs:
        if r.get("scoring_check_max_abs_diff", 0.0) > 1e-3:
            problems.append(f"{r['variant']} seed {r['seed']}: TRL's reward scores differ from the shared scoring by "
                            f"{r['scoring_check_max_abs_diff']:.2e}")
    return problems


def variant_name(variant: str) -> str:
    return "rlxf" if variant == "rlxf" else f"trl {TRL_VERSION} {variant.removeprefix('trl-')} critic"


def format_table(result: dict) -> str:
    """The phase table, the results table and the ratios as plain text."""
    per_variant, ratios, met = result["per_variant"], result["ratios"], result["targets_met"]
    columns = {"generation_s": "generate", "rollout_policy_s": "roll policy", "rollout_ref_s": "roll ref",
               "rollout_value_s": "roll critic", "scoring_s": "score", "optimise_s": "optimise", "other_s": "other"}
    header = f"{'seconds per update (median)':<28}{'total':>8}" + "".join(f"{c:>12}" for c in columns.values())
    lines = [header, "-" * len(header)]
    for variant, s in per_variant.items():
        cells = [f"{s[p]:>12.3f}" if s[p] or p == "other_s" else f"{'-':>12}" for p in columns]
        lines.append(f"{variant_name(variant):<28}{s['s_per_update']:>8.3f}" + "".join(cells))
    lines += ["  - : none (rlxf: the values come with the policy forward; TRL: old log-probs come from generation). "
              "other: the rest (TRL: GAE, gc.collect(), logging)", ""]
    header = (f"{'':<28}{'peak RSS MB':>12}{'train-peak MB':>15}{'imports MB':>12}{'gen tok/s':>11}{'tok/s':>8}"
              f"{'train reward':>14}{'eval before -> after':>23}{'trainable':>13}")
    lines += [header, "-" * len(header)]
    for variant, s in per_variant.items():
        lines.append(f"{variant_name(variant):<28}{s['peak_rss_mb']:>12.0f}{s['train_peak_rss_mb']:>15.0f}"
                     f"{s['baseline_rss_mb']:>12.0f}{s['generation_tokens_per_s']:>11.1f}{s['tokens_per_s']:>8.1f}"
                     f"{s['train_reward_last']:>14.3f}{s['eval_reward_before']:>12.3f} -> "
                     f"{s['eval_reward_after']:>6.3f}"
                     f"{s['trainable_parameters']:>13,}")
    fraction = result["update_peak_fraction"]
    lines += ["", result["precision"] + " (both libraries)",
              f"rlxf update phase (PPO epochs): {result['update_gflops']:.1f} model GFLOP/s of a measured "
              f"{result['dtype']} matmul peak of {result['peak_gflops']:.1f} GFLOP/s = {fraction:.1%} (target >= "
              f"{TARGETS['update_peak_fraction']:.0%}: {'met' if met['update_peak_fraction'] else 'NOT met'})"]
    if result.get("ceiling_gflops"):
        lines.append(f"  its own matmuls alone, back to back at its shapes: {result['ceiling_gflops']:.1f} GFLOP/s = "
                     f"{result['ceiling_peak_fraction']:.1%} of the peak (the update if nothing else took time); the "
                     f"update runs at {result['update_ceiling_fraction']:.1%} of that")
    for critic in sorted(ratios, key=lambda c: c != HEADLINE_CRITIC):  # the headline first
        r, ok = ratios[critic], met[critic]
        lines.append(
            f"rlxf / TRL {critic} critic{' (headline)' if critic == HEADLINE_CRITIC else ''}: time per update "
            f"{r['time_ratio']:.3f} (target <= {TARGETS['time_ratio']}: {'met' if ok['time'] else 'NOT met'}), "
            f"peak RSS {r['peak_rss_ratio']:.3f} (target <= {TARGETS['peak_rss_ratio']}: "
            f"{'met' if ok['peak_memory'] else 'NOT met'}), training-phase peak {r['train_peak_rss_ratio']:.3f}, "
            f"generation tokens/s {r['generation_tokens_per_s_ratio']:.2f}x, eval reward difference "
            f"{r['eval_reward_diff']:+.3f} +- {r['eval_reward_diff_se']:.3f} (s.e.)"
            f"{', within noise' if abs(r['eval_reward_diff']) < 2 * r['eval_reward_diff_se'] else ''}")
    gcs = ", ".join(f"{variant_name(v)} {s['gc_s']:.3f} s" for v, s in per_variant.items())
    lines.append(f"gc.collect() per update: {gcs} (TRL collects twice per update; counted in its time)")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> tuple[BenchSettings, argparse.Namespace]:
    """Command-line settings (dtype still as given: "auto" is resolved by main)."""
    defaults = BenchSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=defaults.model, help="rlxf model name or directory (tiny-llama: quick)")
    parser.add_argument("--updates", type=int, default=defaults.updates, help="PPO updates per run (>= 2)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per variant, alternating rlxf, TRL full, ...")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="torch/OpenMP threads per run")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--num-minibatches", type=int, default=defaults.num_minibatches)
    parser.add_argument("--ppo-epochs", type=int, default=defaults.ppo_epochs)
    parser.add_argument("--lr", type=float, default=defaults.learning_rate)
    parser.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    parser.add_argument("--temperature", type=float, default=defaults.temperature)
    parser.add_argument("--kl-coef", type=float, default=defaults.kl_coef)
    parser.add_argument("--trl-critics", default=",".join(defaults.trl_critics),
                        help="TRL's value models, comma-separated: full (all weights train, TRL's setup) and/or lora "
                             "(LoRA on the same modules + head); the headline ratios are against lora")
    parser.add_argument("--dtype", choices=("auto", "fp32", "bf16"), default="auto",
                        help="compute precision of both libraries (auto: bf16 where this CPU has native bf16)")
    parser.add_argument("--eval-samples", type=int, default=defaults.eval_samples, help="samples per prompt")
    parser.add_argument("--trl-dir", type=Path, default=None, help="where TRL 1.12.0 lives (default artifacts/)")
    parser.add_argument("--decode-only", action="store_true",
                        help="run only the decode section and merge its keys into --out (other keys kept)")
    parser.add_argument("--decode-batches", default="1,4,16,64", help="batch sizes of the decode section")
    parser.add_argument("--decode-repeats", type=int, default=3,
                        help="timed calls per batch size and length in the decode section (the best counts)")
    parser.add_argument("--decode-compare", action="store_true",
                        help="also time transformers' generate in the decode section (the path before rlxf.lm.decode)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON results (default artifacts/benchmarks/ppo_vs_trl.json)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    try:
        settings = BenchSettings(model=args.model, updates=args.updates, threads=args.threads, seed=args.seed,
                                 batch_size=args.batch_size, num_minibatches=args.num_minibatches,
                                 ppo_epochs=args.ppo_epochs, learning_rate=args.lr,
                                 max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                 kl_coef=args.kl_coef, eval_samples=args.eval_samples,
                                 trl_critics=tuple(c.strip() for c in args.trl_critics.split(",")))
    except ValueError as error:
        parser.error(str(error))
    return settings, args


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; print the tables; write the JSON; return the results."""
    from rlxf.lm.precision import precision
    from rlxf.paths import artifacts_dir

    settings, args = parse_args(argv)
    chosen = precision(args.dtype, "cpu")  # once, here: both libraries get the same concrete dtype
    settings = dataclasses.replace(settings, dtype=chosen.name)
    print(f"[setup] {chosen}", flush=True)
    out = args.out or artifacts_dir() / "benchmarks" / "ppo_vs_trl.json"
    if args.decode_only:
        return write_decode(settings, args, out)
    trl_dir = ensure_trl((args.trl_dir or artifacts_dir() / f"trl-{TRL_VERSION}").resolve())
    started = time.perf_counter()
    runs = []
    for repeat in range(args.repeats):
        for variant in variants(settings):
            seed = settings.seed + repeat
            print(f"[run] repeat {repeat + 1}/{args.repeats}: {variant} (seed {seed}, {settings.updates} updates, "
                  f"{settings.threads} thread(s), {settings.dtype})", flush=True)
            run = run_worker(variant, settings, seed, trl_dir)
            print(f"[run]   {variant}: {run['subprocess_wall_s']:.1f} s wall, per update "
                  f"{[round(u['seconds'], 3) for u in run['updates']]} s", flush=True)
            runs.append(run)
    from rlxf.run.runlog import machine

    result = {**summarise(runs, settings), "precision": str(chosen), "machine": machine(),
              "settings": dataclasses.asdict(settings),
              "repeats": args.repeats, "trl_dir": str(trl_dir), "consistency_problems": consistency_checks(runs),
              "wall_s": time.perf_counter() - started, "runs": runs}
    result.update(decode_section(settings, args))
    print("\n" + format_table(result))
    for problem in result["consistency_problems"]:
        print(f"WARNING (fairness): {problem}")
    out.parent.mkdir(parents=True, exist_ok=True)
    written = merge_other_dtype(json.loads(out.read_text()), result) if out.is_file() else result
    out.write_text(json.dumps(written, indent=1) + "\n")
    print(f"\nwrote {out}  (total {result['wall_s']:.0f} s)")
    return result


def merge_other_dtype(existing: dict, result: dict) -> dict:
    """`result` itself when it is in the dtype of the file it goes to (or the file has none); else the file kept, with
    this run under `by_dtype[dtype]` and its headline numbers as `ratio_time_lora_critic_<dtype>`,
    `ratio_memory_lora_critic_<dtype>`, `ratio_time_full_critic_<dtype>`, `update_peak_fraction_<dtype>`."""
    dtype = result["dtype"]
    if existing.get("dtype", dtype) == dtype:
        return {**result, **{k: v for k, v in existing.items() if k in ("by_dtype", "decode_by_dtype")
                             or (k.endswith(tuple(f"_{d}" for d in ("fp32", "bf16"))) and not k.endswith(f"_{dtype}"))}}
    merged = dict(existing)
    merged.setdefault("by_dtype", {})[dtype] = result
    for key in ("ratio_time_lora_critic", "ratio_memory_lora_critic", "ratio_time_full_critic",
                "ratio_memory_full_critic", "update_peak_fraction", "update_gflops", "peak_gflops", "ceiling_gflops",
                "ceiling_peak_fraction", "update_ceiling_fraction", "targets_met",
                "generation_tokens_per_s"):
        if key in result:
            merged[f"{key}_{dtype}"] = result[key]
    return merged


def decode_section(settings: BenchSettings, args: argparse.Namespace) -> dict:
    """rlxf's decode tokens/s and roofline fraction per batch size (`benchmarks/workers/decode.py`), in this process
    at the runs' thread count -> the `decode_*` keys."""
    import torch

    from benchmarks.workers import decode

    torch.set_num_threads(settings.threads)
    batches = tuple(int(b) for b in args.decode_batches.split(","))
    from rlxf.run.runlog import machine

    return {**decode.run(settings.model, settings.dtype, batches, new_tokens=settings.max_new_tokens,
                         repeats=args.decode_repeats, compare=args.decode_compare), "decode_machine": machine()}


def write_decode(settings: BenchSettings, args: argparse.Namespace, out: Path) -> dict:
    """The decode section alone, its keys merged into `out` (a decode run of another dtype under `decode_by_dtype`)."""
    section = decode_section(settings, args)
    result = json.loads(out.read_text()) if out.is_file() else {}
    result.setdefault("decode_by_dtype", {})[f"{settings.dtype}_{settings.threads}t"] = section
    if settings.dtype == result.get("dtype", settings.dtype):
        result.update(section)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote the decode keys into {out}")
    return result


if __name__ == "__main__":
    main()
