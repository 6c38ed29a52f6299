"""What identifies a run, for the fingerprint that checkpoints store and resuming compares (rlxf.infra.checkpoint):
the settings that decide what it computes (fields not marked `not_identity`), the model (name, architecture, a
sample of its weights), the adapter it starts from, the data and the reward by content (`identity_of`: a reward's
class and settings, a function's code, a model's weights, a judge's endpoint and criteria)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
from collections.abc import Mapping

import numpy as np
import torch


def config_fingerprint(settings) -> dict:
    """A settings dataclass as the plain JSON data a checkpoint stores (compare it to tell whether a run matches)."""
    return json.loads(json.dumps(dataclasses.asdict(settings)))


def not_identity(default):
    """A settings field that changes what a run writes or shows, not what it computes (paths, progress bars,
    checkpoint cadence): a run and its resume may differ in it. `field: int = not_identity(50)`."""
    return dataclasses.field(default=default, metadata={"identity": False})


def settings_identity(settings) -> dict:
    """The settings that decide what a run computes: every field of the dataclass but those marked `not_identity`."""
    values = config_fingerprint(settings)
    return {field.name: values[field.name] for field in dataclasses.fields(settings)
            if field.metadata.get("identity", True)}


def callable_name(fn) -> str:
    """A callable's name for fingerprints and messages: its `__name__`, else its class name."""
    return getattr(fn, "__name__", type(fn).__name__)


def short_hash(data) -> str:
    """A 16-hex-digit sha256 of JSON data (for fingerprints: prompt lists, model configs)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def fingerprint_differences(saved: dict, current: dict) -> list[str]:
    """What differs between two fingerprints, as "key: saved (checkpoint) vs current (this run)" lines.

    Only keys both record are compared (a trainer that does not know the data, e.g. a bare `load_checkpoint`,
    compares the rest)."""
    def flat(data, prefix=""):
        if isinstance(data, dict):
            return {k: v for key, value in data.items() for k, v in flat(value, f"{prefix}{key}.").items()}
        return {prefix[:-1]: data}

    saved, current = flat(saved), flat(current)
    return [f"{key}: {saved[key]!r} (checkpoint) vs {current[key]!r} (this run)"
            for key in sorted(saved.keys() & current.keys()) if saved[key] != current[key]]


ARCHITECTURE_FIELDS = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                      "num_key_value_heads", "intermediate_size", "max_position_embeddings")


def model_identity(model) -> dict:
    """The base model of a (Peft)model for a run fingerprint: its name (the last part of name_or_path, so that a
    moved cache still matches), a hash of its architecture fields and `sampled_weights_hash` of its weights."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
    name = str(getattr(base.config, "_name_or_path", "") or "").rstrip("/")
    return {"name": name.rsplit("/", 1)[-1], "architecture": short_hash(
        {field: getattr(config, field, None) for field in ARCHITECTURE_FIELDS}), "weights": sampled_weights_hash(base)}


def sampled_weights_hash(module, values: int = 512) -> str:
    """A 16-hex-digit sha256 of a sample of a module's weights: every parameter but LoRA adapters (and an output
    embedding tied to the input one, which a bf16 copy may have untied), at up to `values` evenly spaced positions,
    rounded to bf16 so that frozen weights stored in bf16 (rlxf.lm.precision) hash as before. Reads a few hundred
    thousand numbers of any model; differently trained weights differ in them."""
    base = module.get_base_model() if hasattr(module, "get_base_model") else module
    skip = set()
    if getattr(getattr(base, "config", None), "tie_word_embeddings", False) and hasattr(base, "get_output_embeddings"):
        output = base.get_output_embeddings()
        skip = {f"{name}.weight".replace(".base_layer", "") for name, m in base.named_modules() if m is output}
    digest = hashlib.sha256()
    for name, parameter in sorted(base.named_parameters(), key=lambda item: item[0]):
        name = name.replace(".base_layer", "")  # the same name with or without LoRA on the layer
        if "lora_" in name or "modules_to_save" in name or name in skip or parameter.device.type == "meta":
            continue
        flat = parameter.detach().reshape(-1)
        sample = flat[::max(1, flat.numel() // values)][:values].to(torch.bfloat16).cpu()
        digest.update(name.encode())
        digest.update(sample.view(torch.int16).numpy().tobytes())
    return digest.hexdigest()[:16]


def code_hash(code) -> str:
    """A 16-hex-digit hash of what a code object computes: its bytecode, constants (nested code objects included)
    and the names it reads; not its file, line numbers or local variable names (a moved file still matches)."""
    def const(value):
        if inspect.iscode(value):
            return [value.co_code.hex(), [const(c) for c in value.co_consts], list(value.co_names)]
        if isinstance(value, (tuple, frozenset)):
            items = [const(v) for v in value]
            return sorted(items, key=repr) if isinstance(value, frozenset) else items
        return repr(value)

    return short_hash(const(code))


def identity_of(value, depth: int = 0):
    """What `value` contributes to a run's fingerprint, as JSON data that is the same in every process.

    Plain data as itself; an object with `identity()` (rlxf's rewards, judges, raters) its class and that; a
    function or lambda its qualified name and `code_hash` (its closure's values are not read); a bound method that
    and its object; an nn.Module its class and `sampled_weights_hash`; a tokenizer its class and vocabulary size;
    another callable object its class, the code of its `__call__` and its public attributes; anything else its
    class (and a dataclass its fields)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    kind = type(value).__qualname__
    if depth > 4:
        return {"class": kind}
    nested = functools.partial(identity_of, depth=depth + 1)
    if isinstance(value, (list, tuple)):
        return [nested(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): nested(v) for k, v in value.items()}
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return {"class": kind, "values": weights_hash([("", torch.as_tensor(value))])}
    if callable(getattr(value, "identity", None)) and not inspect.isclass(value):
        return {"class": kind, **nested(value.identity())}
    if isinstance(value, torch.nn.Module):
        return {"class": kind, "weights": sampled_weights_hash(value)}
    if isinstance(value, functools.partial):
        return {"partial": nested(value.func), "args": nested(value.args), "keywords": nested(value.keywords)}
    if inspect.ismethod(value):
        return {"method": value.__qualname__, "code": code_hash(value.__func__.__code__),
                "object": nested(value.__self__)}
    if inspect.isfunction(value):
        return {"function": value.__qualname__, "code": code_hash(value.__code__)}
    if hasattr(value, "convert_tokens_to_ids") and hasattr(value, "__len__"):
        return {"class": kind, "vocabulary": len(value)}
    if dataclasses.is_dataclass(value) and not inspect.isclass(value):
        return {"class": kind, **nested(dataclasses.asdict(value))}
    if callable(value) and hasattr(value, "__dict__") and not inspect.isclass(value):
        call = getattr(type(value).__call__, "__code__", None)
        return {"class": kind, "code": code_hash(call) if call is not None else None,
                "attributes": nested({k: v for k, v in vars(value).items() if not k.startswith("_")})}
    return {"class": kind if not inspect.isclass(value) else f"class {value.__qualname__}"}


def data_identity(prompts: list[str], batch_size: int, reward_fn) -> dict:
    """The data part of a run's fingerprint: the prompts (a hash and their count), the batch size, and the reward by
    name (as older checkpoints recorded it) and by content (`identity_of`)."""
    return {"prompts": short_hash(list(prompts)), "n_prompts": len(prompts), "batch_size": batch_size,
            "reward_fn": callable_name(reward_fn), "reward": identity_of(reward_fn)}


def weights_hash(named_tensors) -> str:
    """A 16-hex-digit sha256 of named tensors' bytes (for fingerprints: the adapter a run starts from)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(named_tensors, key=lambda item: item[0]):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
