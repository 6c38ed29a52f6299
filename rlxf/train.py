"""One training stage from a YAML file, for scale-out: `python -m rlxf.train {sft,reward,grpo,rloo,ppo} --config
configs/train/<name>.yaml`, the same under `torchrun` or `accelerate launch --config_file configs/accelerate/...`.

The YAML holds the keys of `ScriptArguments` (model, data, output_dir, ...) and of the method's settings dataclass
(`SFTSettings`, `PreferenceSettings`, `TRLSettings`, `PPOSettings`), both parsed with transformers'
`HfArgumentParser` (an unknown key is an error). SFT, reward, GRPO and RLOO train through `transformers.Trainer`,
which runs data parallel, DeepSpeed or FSDP under `accelerate launch` by itself; PPO is rlxf's own loop, data
parallel through `rlxf.distributed` (each process generates for its share of the prompts and per-process
`batch_size` rollouts; gradients and metrics are averaged). Process 0 writes the outputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from rlxf.algos.ppo import PPOSettings, PPOTrainer
from rlxf.algos.sft import SFTSettings, train_lora_sft
from rlxf.algos.trl_online import TRLSettings, train_trl
from rlxf.data import hydrate, read_table
from rlxf.data.prompts import POLITICAL_QUESTIONS, SOCRATES_PROMPTS
from rlxf.data.source import locate_data
from rlxf.infra.distributed import barrier, init_from_env, rank_and_world
from rlxf.lm.adapters import save_adapter
from rlxf.lm.generation import chat_prompt
from rlxf.lm.models import load_causal_lm, load_classifier
from rlxf.rewards.bradley_terry import PreferenceSettings, train_reward_model
from rlxf.rewards.classifiers import ClassifierReward

SETTINGS = {"sft": SFTSettings, "reward": PreferenceSettings, "grpo": TRLSettings, "rloo": TRLSettings,
            "ppo": PPOSettings}


@dataclass
class ScriptArguments:
    """What a training stage reads and where it writes (the method's settings hold the rest)."""

    model: str = "tiny-llama"
    """base model: a name from rlxf.lm.models (smollm2-135m-instruct, tiny-llama, ...), a hub id or a directory"""
    data: str = "fixtures"
    """corpora for sft (political tweets) and reward (HH-RLHF): "fixtures", "" (auto) or a data directory"""
    output_dir: str = "artifacts/train"
    """where the adapter (reward: the reward model), its card and the metrics go"""
    reward: str = "brevity"
    """grpo/rloo/ppo: "brevity" (a toy reward: replies near 8 words) or a classifier directory saved by notebook 03"""
    steps: int = 4
    """ppo: PPO steps (sft: SFTSettings.max_steps, grpo/rloo: TRLSettings.steps)"""
    party: str = "Democrat"
    """sft: whose tweets the adapter learns"""
    max_examples: int = 256
    """most training texts (sft) or pairs (reward)"""


def parse_config(method: str, path: str | Path) -> tuple[ScriptArguments, object]:
    """(script arguments, the method's settings) from a YAML file; errors name the file and the key."""
    from transformers import HfArgumentParser

    if method not in SETTINGS:
        raise ValueError(f"method {method!r} is unknown; expected one of {list(SETTINGS)}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--config {str(path)!r} does not exist (see configs/train/)")
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of keys to values")
    script_keys = {f.name for f in dataclasses.fields(ScriptArguments)}
    settings_class = SETTINGS[method]
    setting_keys = {f.name for f in dataclasses.fields(settings_class)} - {"output_dir"}
    unknown = sorted(set(values) - script_keys - setting_keys)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown} for {method}; expected ScriptArguments fields "
                         f"{sorted(script_keys)} or {settings_class.__name__} fields {sorted(setting_keys)}")
    (script,) = HfArgumentParser(ScriptArguments).parse_dict({k: v for k, v in values.items() if k in script_keys})
    settings_values = {k: v for k, v in values.items() if k in setting_keys}
    if "output_dir" in {f.name for f in dataclasses.fields(settings_class)}:
        settings_values["output_dir"] = str(Path(script.output_dir) / ("run" if method == "ppo" else "adapter"))
    # Built directly, keys checked above: HfArgumentParser would hand the fields' metadata (the not_identity marks of
    # rlxf.infra.identity) to argparse as keywords.
    settings = settings_class(**settings_values)
    return script, settings


def brevity(prompts: list[str], completions: list[str], **kwargs) -> list[float]:
    """A toy reward for runs without a trained one: 1 at 8 words, falling linearly to 0 at 0 or 16 words."""
    return [max(0.0, 1.0 - abs(len(text.split()) - 8) / 8) for text in completions]


def reward_function(name: str):
    """`brevity`, or a `ClassifierReward` on a classifier directory saved by notebook 03."""
    if name == "brevity":
        return brevity
    if not Path(name).is_dir():
        raise FileNotFoundError(f"reward {name!r}: expected 'brevity' or a classifier directory saved by notebook 03")
    return ClassifierReward.from_saved(name)


def prompts_for(tokenizer) -> list[str]:
    """The RL prompts: the political questions and the Socrates openers, as chat prompts."""
    return [chat_prompt(tokenizer, text) for text in (*POLITICAL_QUESTIONS, *SOCRATES_PROMPTS)]


def run(method: str, script: ScriptArguments, settings) -> dict:
    """Train one stage -> a summary (also written to `<output_dir>/summary.json` by process 0)."""
    init_from_env()
    rank, world = rank_and_world()
    out = Path(script.output_dir)
    summary: dict = {"method": method, "model": script.model, "processes": world}
    if method in ("sft", "reward"):
        tables_dir = out / "data"
        if rank == 0:  # one process hydrates; the others wait for its tables
            data_dir, _ = locate_data(script.data, out)
            hydrate(data_dir, tables_dir, sources=["political" if method == "sft" else "hh"])
        barrier()
    if method == "sft":
        model, tokenizer = load_causal_lm(script.model)
        tweets = read_table(tables_dir, "political")
        texts = tweets[(tweets.party == script.party) & (tweets.split == "train")].text.tolist()[: script.max_examples]
        result = train_lora_sft(model, tokenizer, texts, settings=settings, model_card={"party": script.party})
        summary |= {"adapter": str(result.adapter_dir), "final_loss": result.history[-1].get("loss")}
    elif method == "reward":
        model, tokenizer = load_classifier(script.model, num_labels=1)
        pairs = read_table(tables_dir, "hh_harmless").head(script.max_examples)
        result = train_reward_model(model, tokenizer, pairs[["prompt", "chosen", "rejected"]], settings)
        if rank == 0:
            result.model.save_pretrained(out / "reward_model")
            tokenizer.save_pretrained(out / "reward_model")
        summary |= {"reward_model": str(out / "reward_model"), "pairs": result.n_pairs}
    elif method in ("grpo", "rloo"):
        model, tokenizer = load_causal_lm(script.model)
        trained, history = train_trl(method, model, tokenizer, {"prompt": prompts_for(tokenizer)},
                                     reward_function(script.reward), settings)
        name = trained.active_adapter
        if rank == 0:
            save_adapter(trained, name, settings.output_dir, method=method, card={"reward": script.reward})
        summary |= {"adapter": settings.output_dir, "reward_last": float(history.reward.iloc[-1])}
    else:
        model, tokenizer = load_causal_lm(script.model)
        # process 0 keeps the run's metrics and checkpoints; the others train the same weights without writing
        settings = settings if rank == 0 else dataclasses.replace(settings, output_dir=None, progress_bar=False)
        trainer = PPOTrainer(model, tokenizer, settings, adapter_name="policy")
        history = trainer.train(prompts_for(tokenizer)[rank::world], reward_function(script.reward), steps=script.steps)
        if rank == 0:
            save_adapter(trainer.model, "policy", out / "adapter", method="ppo",
                         card={"reward": script.reward, "steps": script.steps, "processes": world})
        summary |= {"adapter": str(out / "adapter"), "reward_mean_last": history[-1]["env/reward_mean"]}
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
        print(json.dumps(summary, default=str))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlxf.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("method", choices=list(SETTINGS))
    parser.add_argument("--config", required=True, help="YAML of ScriptArguments and the method's settings")
    args = parser.parse_args(argv)
    try:
        script, settings = parse_config(args.method, args.config)
    except (ValueError, FileNotFoundError) as error:
        print(f"rlxf.train: error: {error}", file=sys.stderr)
        return 2
    run(args.method, script, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
