"""fp32 vs the machine's compute precision on SmolLM2-135M (rlxf.lm.precision): forward, forward+backward, generate, a
PPO step of notebook 04's size, and the prompt tokens the chat template adds. Runs alternate (A B A B); medians printed.

    python benchmarks/precision.py [--model smollm2-135m-instruct] [--repeats 3] [--threads 2] [--skip-ppo]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from rlxf.algos.ppo import PPOSettings, PPOTrainer
from rlxf.lm.generation import chat_prompt, encode_text, eos_ids, generate_responses, padding_id, sampling_config
from rlxf.lm.models import load_causal_lm
from rlxf.lm.precision import Precision, precision

PROMPTS = ["What is justice?", "What is your opinion on abortion?", "Should the federal minimum wage be raised?",
           "How should we respond to climate change?", "The movie was", "What is beauty?",
           "What should be done about immigration?", "What is the best form of government?"]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(what: str, cases: dict, repeats: int) -> dict:
    """Median seconds per case, the cases run in turn `repeats` times after one warm-up each; printed as it goes."""
    for fn in cases.values():
        fn()
    times = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            times[name].append(timed(fn))
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    print(what, {name: round(t, 3) for name, t in medians.items()}, flush=True)
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-ppo", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    chosen = precision("auto", "cpu")
    fp32 = Precision(torch.float32, "cpu", "fp32 baseline")
    print(chosen)
    model, tokenizer = load_causal_lm(args.model, device="cpu")
    results: dict = {"precision": str(chosen)}

    # prompt tokens with the template's default system prompt vs none
    with_default = [len(tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                                      tokenize=True, return_dict=True)["input_ids"]) for p in PROMPTS]
    without = [len(encode_text(tokenizer, chat_prompt(tokenizer, p))) for p in PROMPTS]
    results["prompt_tokens"] = {"template_default": statistics.mean(with_default), "rlxf": statistics.mean(without)}
    print("prompt tokens (mean of 8):", results["prompt_tokens"])

    # forward and forward+backward, batch 8 x 96 tokens
    ids = torch.randint(100, 10_000, (8, 96))
    model.train()

    def forward(p: Precision):
        with torch.no_grad(), p.autocast():
            model(input_ids=ids).logits.float().sum()

    def forward_backward(p: Precision):
        with p.autocast():
            loss = model(input_ids=ids).logits.float().logsumexp(-1).mean()
        loss.backward()
        model.zero_grad(set_to_none=True)

    results["forward_s"] = alternate("forward 8x96 s",
                                     {"fp32": lambda: forward(fp32), chosen.name: lambda: forward(chosen)},
                                     args.repeats)
    results["forward_backward_s"] = alternate("forward+backward 8x96 s", {"fp32": lambda: forward_backward(fp32),
                                               chosen.name: lambda: forward_backward(chosen)}, args.repeats)
    model.eval()

    # generate 8 x 32 tokens (sampling path of PPO and the evaluation)
    queries = [encode_text(tokenizer, chat_prompt(tokenizer, p)) for p in PROMPTS]
    pad, eos = padding_id(tokenizer), eos_ids(model, tokenizer)

    config = sampling_config(max_new_tokens=32, temperature=0.7, top_k=0, top_p=1.0, pad_id=pad, eos_ids=eos)
    config.min_new_tokens = 32  # the same 8 x 32 tokens in both precisions

    def generate(p: Precision):
        torch.manual_seed(0)
        with p.autocast():
            generate_responses(model, queries, config, pad, eos)

    results["generate_8x32_s"] = alternate("generate 8x32 s",
                                           {"fp32": lambda: generate(fp32), chosen.name: lambda: generate(chosen)},
                                           args.repeats)

    if not args.skip_ppo:  # one PPO step of notebook 04's size: 8 replies x 32 tokens, 4 epochs
        trainers = {name: PPOTrainer(load_causal_lm(args.model, device="cpu")[0], tokenizer,
                                     PPOSettings(batch_size=8, max_new_tokens=32, dtype=name, progress_bar=False))
                    for name in dict.fromkeys(("fp32", chosen.name))}
        rewards = [0.1 * i for i in range(8)]
        steps: dict = {name: [] for name in trainers}
        for _ in range(args.repeats):
            for name, trainer in trainers.items():
                start = time.perf_counter()
                q, r, _texts = trainer.generate([chat_prompt(tokenizer, p) for p in PROMPTS])
                generated = time.perf_counter()
                trainer.step(q, r, rewards)
                steps[name].append({"generation_s": generated - start, "update_s": time.perf_counter() - generated,
                                    "response_tokens": sum(len(x) for x in r)})
                print("ppo step", name, steps[name][-1], flush=True)
        results["ppo_step"] = {name: {key: statistics.median(row[key] for row in rows) for key in rows[0]}
                               for name, rows in steps.items()}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
