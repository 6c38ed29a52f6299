"""LoRA adapters on one PeftModel: build, attach, copy, switch, save and load them.

Every LoRA adapter in rlxf is made by `lora_config` from settings with the fields `lora_r`, `lora_alpha`,
`lora_dropout` and `lora_target_modules` (PPOSettings, SFTSettings, TRLSettings), and every switch between adapters
goes through `using_adapter`, where `None` always means the base model with adapters disabled.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from torch import nn

LORA_TARGET_MODULES: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
"""the default modules that get LoRA: the attention projections (settings may pass "all-linear" or other names)"""


def lora_config(settings):
    """The peft LoraConfig of a new causal-LM adapter from settings with lora_r/_alpha/_dropout/_target_modules."""
    from peft import LoraConfig

    target = settings.lora_target_modules
    return LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                      target_modules=target if isinstance(target, str) else list(target),
                      bias="none", task_type="CAUSAL_LM")


def check_target_modules(owner: str, target) -> str | tuple[str, ...]:
    """`lora_target_modules` as "all-linear"-style string or a non-empty tuple of module names."""
    if isinstance(target, str):
        if not target:
            raise ValueError(f"{owner}.lora_target_modules must not be empty")
        return target
    target = tuple(target)
    if not target or not all(isinstance(name, str) and name for name in target):
        raise ValueError(f"{owner}.lora_target_modules must be non-empty module names, got {target!r}")
    return target


def is_peft(model) -> bool:
    """Whether `model` is a PeftModel (it has a dict of adapter configs)."""
    return isinstance(getattr(model, "peft_config", None), dict)


@contextmanager
def using_adapter(model, adapter: str | None) -> Iterator[None]:
    """Run the block with LoRA adapter `adapter` active, then restore the active adapter and every requires_grad.

    `adapter=None`: the base model with adapters disabled (a model that is not a PeftModel is its own base).
    peft's `set_adapter` also changes which parameters train, which would silently freeze the adapter a PPO trainer
    is updating; this restores them.
    """
    if not is_peft(model):
        if adapter is not None:
            raise ValueError(f"adapter {adapter!r} is not on this model; adapters: none (not a PeftModel)")
        yield
        return
    if adapter is None:
        with model.disable_adapter():
            yield
        return
    if adapter not in model.peft_config:
        raise ValueError(f"adapter {adapter!r} is not on this model; adapters: {sorted(model.peft_config)}")
    previous = model.active_adapter
    trainable = [(p, p.requires_grad) for p in model.parameters()]
    model.set_adapter(adapter, inference_mode=True)
    try:
        yield
    finally:
        model.set_adapter(previous)
        for param, flag in trainable:
            param.requires_grad_(flag)


def adapter_parameters(model: nn.Module, adapter_name: str) -> list[tuple[str, nn.Parameter]]:
    """The (name, parameter) pairs of one adapter (its LoRA matrices and modules_to_save copies)."""
    owned = []
    for name, param in model.named_parameters():
        parts = name.split(".")
        if any(part == adapter_name and (parts[i - 1].startswith("lora_") or parts[i - 1] == "modules_to_save")
               for i, part in enumerate(parts) if i > 0):
            owned.append((name, param))
    return owned


def set_lora_dropout(model: nn.Module, adapter_name: str, active: bool) -> None:
    """Switch only this adapter's LoRA dropout on (updates) or off (rollouts)."""
    for module in model.modules():
        dropout = getattr(module, "lora_dropout", None)
        if isinstance(dropout, nn.ModuleDict) and adapter_name in dropout:
            dropout[adapter_name].train(active)


def copy_adapter(model, source: str, target: str) -> None:
    """Add adapter `target` to a PeftModel as a frozen copy of adapter `source`."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    ref_config = copy.deepcopy(model.peft_config[source])
    ref_config.inference_mode = True
    model.add_adapter(target, ref_config)
    weights = get_peft_model_state_dict(model, adapter_name=source, save_embedding_layers=False)  # LoRA only
    set_peft_model_state_dict(model, weights, adapter_name=target)
    for _, param in adapter_parameters(model, target):
        param.requires_grad_(False)


def attach_policy(model, adapter_name: str, settings):
    """Wrap or extend `model` so that it holds adapter `adapter_name` -> (peft_model, started_from_existing)."""
    from peft import PeftModel, get_peft_model

    if isinstance(model, PeftModel):
        if adapter_name in model.peft_config:
            return model, True
        model.add_adapter(adapter_name, lora_config(settings))
        return model, False
    return get_peft_model(model, lora_config(settings), adapter_name=adapter_name), False


def attach_reference(model, adapter_name: str, ref_adapter: str | None, started_from_existing: bool) -> str | None:
    """Set up the frozen reference policy -> its adapter name, or None for "base with adapters disabled"."""
    if ref_adapter == "auto":
        ref_adapter = f"{adapter_name}_ref" if started_from_existing else None
    if ref_adapter is None:
        if started_from_existing:
            warnings.warn(f"adapter {adapter_name!r} already has weights but the reference is the bare base model; "
                          "the KL penalty then pulls towards the base, not the starting policy (trl#495)", stacklevel=3)
        return None
    if ref_adapter == adapter_name:
        raise ValueError(f"ref_adapter must differ from the trained adapter {adapter_name!r}")
    if ref_adapter not in model.peft_config:
        copy_adapter(model, adapter_name, ref_adapter)
    return ref_adapter


def save_adapter(model, adapter_name: str, directory: str | Path, *, card: dict | None = None,
                 method: str = "", title: str | None = None) -> Path:
    """Write one adapter of a PeftModel in PEFT's format (loadable with `PeftModel.from_pretrained`) -> directory.

    Only `adapter_name` is written, whatever else the model holds, and its `adapter_config.json` names the base
    model (`models.base_model_reference`: the hub id where one exists), so the directory round-trips through the hub.
    `card`: also write a README.md model card with these fields (`write_card`; `method` and `title` go there).
    """
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    from rlxf.lm.models import base_model_reference

    if not is_peft(model) or adapter_name not in model.peft_config:
        found = sorted(model.peft_config) if is_peft(model) else "none (not a PeftModel)"
        raise ValueError(f"adapter {adapter_name!r} is not on this model; adapters: {found}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = get_peft_model_state_dict(model, adapter_name=adapter_name, save_embedding_layers=False)
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, directory / "adapter_model.safetensors")
    config = copy.deepcopy(model.peft_config[adapter_name])
    config.base_model_name_or_path, weights = base_model_reference(model)
    config.inference_mode = True
    config.save_pretrained(str(directory))
    if card is not None:
        write_card(directory, card, base_model=config.base_model_name_or_path, weights=weights, method=method,
                   title=title)
    return directory


def write_card(directory: str | Path, fields: dict, *, base_model: str, weights: str = "", method: str = "",
               title: str | None = None) -> Path:
    """README.md model card of an adapter (hub metadata through `huggingface_hub.ModelCard`, then a field table)."""
    from huggingface_hub import ModelCard, ModelCardData

    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"adapter directory {str(directory)!r} does not exist")
    if not isinstance(fields, dict):
        raise ValueError(f"card fields must be a dict of field -> value, got {type(fields).__name__}")

    def rows(prefix: str, value):
        if isinstance(value, dict):
            for key, inner in value.items():
                yield from rows(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            text = f"{value:.6g}" if isinstance(value, float) else str(value)
            yield f"| {prefix} | {text.replace('|', '/').replace(chr(10), ' ')} |"

    data = ModelCardData(base_model=base_model, library_name="peft", pipeline_tag="text-generation",
                         tags=["lora", "rlxf", *([method] if method else [])])
    body = [
        f"# {title or directory.name}", "",
        f"A LoRA adapter in PEFT format, trained by rlxf{f' ({method})' if method else ''}, on the base model "
        f"`{base_model}`" + (f"; base weights: {weights}." if weights else "."),
        "Load it with `peft.PeftModel.from_pretrained(base, adapter_dir)` or "
        "`rlxf.lm.adapters.load_adapter(base, adapter_dir, name)`.", "",
        "| field | value |", "|---|---|", *rows("", {"base_model": base_model, **fields}), "",
    ]
    path = directory / "README.md"
    ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body)).save(path)
    return path


def push_adapter(directory: str | Path, repo_id: str, *, private: bool = True, commit_message: str | None = None,
                 api=None) -> str:
    """Upload an adapter directory to the hub repo `repo_id` (created if missing) -> the repo's URL.

    Goes through `huggingface_hub.HfApi` (token from `HF_TOKEN` or `huggingface-cli login`); `api` lets tests
    pass a stand-in.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.utils import validate_repo_id

    directory = Path(directory)
    if not (directory / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{str(directory)!r} holds no adapter_config.json: not an adapter directory to push")
    if not isinstance(repo_id, str) or "/" not in repo_id:
        raise ValueError(f"hub_repo_id must be 'owner/name', got {repo_id!r}")
    validate_repo_id(repo_id)
    api = api or HfApi()
    repo = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(directory),
                      commit_message=commit_message or f"rlxf: upload adapter {directory.name}")
    return str(getattr(repo, "url", repo) or f"https://huggingface.co/{repo_id}")


def save_adapters(model, names, directory: str | Path) -> None:
    """`save_adapter` for each adapter in `names` (None entries skipped) into `directory/<name>`."""
    for name in names:
        if name is not None:
            save_adapter(model, name, Path(directory) / name)


def load_adapters(model, names, directory: str | Path) -> None:
    """`load_adapter_weights` for each adapter in `names` (None entries skipped) from `directory/<name>`."""
    for name in names:
        if name is not None:
            load_adapter_weights(model, name, Path(directory) / name)


def load_adapter(base_model, adapter_dir: str | Path, adapter_name: str = "default"):
    """Load a saved adapter onto `base_model` (a bare model, or a PeftModel to stack another) and make it active.

    PEFT injects the LoRA layers into the base model in place; `using_adapter(model, None)` gives the bare base.
    """
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{str(adapter_dir)!r} holds no adapter_config.json: not a PEFT adapter directory")
    if not isinstance(adapter_name, str) or not adapter_name:
        raise ValueError(f"adapter_name must be a non-empty str, got {adapter_name!r}")
    if isinstance(base_model, PeftModel):
        if adapter_name in base_model.peft_config:
            raise ValueError(f"an adapter named {adapter_name!r} is already loaded; pick another adapter_name")
        base_model.load_adapter(str(adapter_dir), adapter_name=adapter_name)
        model = base_model
    else:
        model = PeftModel.from_pretrained(base_model, str(adapter_dir), adapter_name=adapter_name)
    model.set_adapter(adapter_name)
    model.eval()
    return model


def load_adapter_weights(model, adapter_name: str, directory: str | Path) -> None:
    """Load weights written by `save_adapter` into the existing adapter `adapter_name` of a PeftModel."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = Path(directory) / "adapter_model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"adapter weights for {adapter_name!r} not found: expected {path}")
    result = set_peft_model_state_dict(model, load_file(str(path)), adapter_name=adapter_name)
    missing = [key for key in result.missing_keys if f".{adapter_name}." in key]
    if missing:
        raise ValueError(f"{path} does not match adapter {adapter_name!r}: missing {missing[:3]}")


def push_adapters(adapters_dir: str | Path, names, hub_repo_id: str, *, api=None) -> dict[str, str]:
    """`push_adapter` for each `adapters_dir/<name>` to the hub repo `<hub_repo_id>-<name>` -> {name: URL}.

    The notebooks' `push_to_hub` / `hub_repo_id` parameters (off by default) end here.
    """
    if not isinstance(hub_repo_id, str) or hub_repo_id.count("/") != 1 or not all(hub_repo_id.split("/")):
        raise ValueError(f"push_to_hub needs hub_repo_id = 'owner/prefix' (each adapter goes to "
                         f"'owner/prefix-<adapter>'), got {hub_repo_id!r}")
    return {name: push_adapter(Path(adapters_dir) / name, f"{hub_repo_id}-{name}", api=api) for name in names}
