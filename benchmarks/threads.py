"""Threads per notebook: how much faster is the policy's work with every core than with one?

    python benchmarks/threads.py [--model smollm2-135m-instruct] [--threads 1 2] [--out PATH]

The answer decides `python -m rlxf.run --jobs`: where N threads do less than N times the work of one, N one-thread
notebooks side by side get more done than one N-thread notebook. Each thread count runs in a fresh process (torch
fixes its thread pool at start-up) and measures, in the precision `rlxf.device` picks here:
- generation: 8 chat prompts x 32 sampled tokens through `rlxf.lm.generation.sample_tokens`, LoRA r=8 on q_proj/v_proj
  (tokens per second, best of 3);
- a training step: forward + backward of the same LoRA model on 8 x 64 tokens (seconds, best of 3).
Results: a table on stdout and `--out` (default `artifacts/benchmarks/threads.json`), with the throughput of
`threads` one-thread processes against one `threads`-thread process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def worker(model_name: str) -> dict:
    import torch
    from peft import get_peft_model

    from rlxf.algos.ppo import PPOSettings
    from rlxf.lm.adapters import lora_config
    from rlxf.lm.generation import chat_prompt, sample_tokens
    from rlxf.lm.models import load_causal_lm
    from rlxf.lm.precision import precision, store_frozen_weights

    model, tokenizer = load_causal_lm(model_name, device="cpu", dtype=torch.float32)
    model = get_peft_model(model, lora_config(PPOSettings(lora_target_modules=("q_proj", "v_proj"))))
    chosen = store_frozen_weights(model, precision("auto", "cpu"))
    prompts = [chat_prompt(tokenizer, f"Write a short opinion about topic number {i} in politics.") for i in range(8)]
    queries = [torch.tensor(tokenizer(p)["input_ids"]) for p in prompts]
    eos = {tokenizer.eos_token_id}

    def generate() -> float:
        torch.manual_seed(0)
        start = time.perf_counter()
        replies = sample_tokens(model, queries, max_new_tokens=32, temperature=1.0, pad_id=tokenizer.pad_token_id,
                                eos_ids=eos, dtype=chosen)
        return sum(len(r) for r in replies) / (time.perf_counter() - start)

    batch = torch.randint(0, model.config.vocab_size, (8, 64), generator=torch.Generator().manual_seed(0))

    def train_step() -> float:
        start = time.perf_counter()
        with chosen.autocast():
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    generate(), train_step()  # warm-up
    return {"threads": torch.get_num_threads(), "precision": str(chosen),
            "generation_tokens_per_s": max(generate() for _ in range(3)),
            "train_step_s": min(train_step() for _ in range(3))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "benchmarks" / "threads.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.model)))
        return 0
    rows = []
    for threads in args.threads:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        out = subprocess.run([sys.executable, __file__, "--worker", "--model", args.model], env=env, cwd=REPO,
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    one = next((r for r in rows if r["threads"] == 1), None)
    print(f"{'threads':>7}  {'generation tok/s':>16}  {'train step s':>12}  precision")
    for r in rows:
        print(f"{r['threads']:>7}  {r['generation_tokens_per_s']:>16.1f}  {r['train_step_s']:>12.3f}  {r['precision']}")
    result = {"model": args.model, "cores": os.cpu_count(), "runs": rows}
    if one is not None:
        for r in rows:
            if r["threads"] > 1:
                n = r["threads"]
                # n one-thread processes side by side vs one n-thread process (ideal: cores not otherwise busy)
                result[f"speedup_{n}_threads"] = {
                    "generation": r["generation_tokens_per_s"] / one["generation_tokens_per_s"],
                    "train_step": one["train_step_s"] / r["train_step_s"]}
                result[f"throughput_{n}_jobs_vs_{n}_threads"] = {
                    "generation": n * one["generation_tokens_per_s"] / r["generation_tokens_per_s"],
                    "train_step": n * r["train_step_s"] / one["train_step_s"]}
                print(f"{n} threads vs 1: generation x{result[f'speedup_{n}_threads']['generation']:.2f}, "
                      f"train step x{result[f'speedup_{n}_threads']['train_step']:.2f}; {n} one-thread jobs vs one "
                      f"{n}-thread job: generation x{result[f'throughput_{n}_jobs_vs_{n}_threads']['generation']:.2f}"
                      f", train step x{result[f'throughput_{n}_jobs_vs_{n}_threads']['train_step']:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
