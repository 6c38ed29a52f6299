"""Tokenizers built in code for the tiny test models, so that they need no download.

Both are byte-level BPE trained on a short built-in English text: any string encodes (unknown characters fall back
to bytes), the vocabulary is a few hundred tokens, and training is deterministic and takes milliseconds.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

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
    tokenizer = Tokenizer(models.BPE())
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
