"""Config dicts of the paper's models (Llama-3.1-8B(-Instruct) and Llama-Guard-3-8B) and of their tiny stand-ins,
for building random-weight models that need nothing from the hub (``tests.perf.gpu_check``).

Sources of the numbers:

* ``LLAMA_31_8B``: ``config.json`` of ``meta-llama/Llama-3.1-8B-Instruct`` on the Hugging Face hub (transformers
  4.43 era; ``eos_token_id`` is the Instruct model's list).
* ``LLAMA_GUARD_3_8B``: ``config.json`` of ``meta-llama/Llama-Guard-3-8B``. Its model card says it is a fine-tune of
  Llama-3.1-8B: the architecture fields are the same as above, only the end token differs (``<|eot_id|>``, 128009).
* ``TINY_BASE`` / ``TINY_GUARD``: the same architecture family (GQA, llama3 RoPE scaling, untied head) at the size of
  :func:`harness.models.tiny_random_model` (hidden 64, 2 layers), with the vocabulary of
  :func:`harness.models.tiny_tokenizer` (256 bytes + 3 specials), for CPU runs of the check in seconds.

None of this needs a download: the weights are random, the tokenizer is the byte-level test tokenizer, padded to the
config's vocabulary size when that is larger (:func:`byte_tokenizer`), so every id a random model emits decodes.
"""

from __future__ import annotations

import copy
import itertools

LLAMA3_ROPE_SCALING = {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                       "original_max_position_embeddings": 8192, "rope_type": "llama3"}

LLAMA_31_8B = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "attention_bias": False, "attention_dropout": 0.0, "mlp_bias": False, "hidden_act": "silu",
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
    "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8,
    "max_position_embeddings": 131072, "rope_theta": 500000.0, "rope_scaling": LLAMA3_ROPE_SCALING,
    "rms_norm_eps": 1e-05, "initializer_range": 0.02, "pretraining_tp": 1,
    "tie_word_embeddings": False, "vocab_size": 128256,
}

LLAMA_GUARD_3_8B = {**LLAMA_31_8B, "eos_token_id": 128009}

# the byte-level tokenizer's ids (harness.models.tiny_tokenizer): 0-255 bytes, 256 <pad>, 257 <|im_end|>,
# 258 <|im_start|>
TINY_VOCAB, TINY_PAD, TINY_EOS, TINY_BOS = 259, 256, 257, 258

TINY_BASE = {
    **LLAMA_31_8B,
    "bos_token_id": TINY_BOS, "eos_token_id": TINY_EOS, "pad_token_id": TINY_PAD,
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2,
    "vocab_size": TINY_VOCAB,
}

TINY_GUARD = {**TINY_BASE}

ARCH_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
             "vocab_size", "tie_word_embeddings", "attention_bias", "mlp_bias")
"""The fields that fix the weights' names and shapes: two configs equal on them can share weight files."""

CONFIGS = {"paper": (LLAMA_31_8B, LLAMA_GUARD_3_8B), "tiny": (TINY_BASE, TINY_GUARD)}
"""``--tiny`` or not -> (base config, guard config)."""


def llama_config(values: dict):
    """A transformers ``LlamaConfig`` from one of the dicts above (a copy: the dicts stay as they are)."""
    from transformers import LlamaConfig

    values = copy.deepcopy(values)
    values.pop("architectures", None)
    values.pop("model_type", None)
    config = LlamaConfig(**values)
    config.architectures = ["LlamaForCausalLM"]
    return config


def same_weights_layout(a: dict, b: dict) -> bool:
    """Whether models built from ``a`` and ``b`` have the same parameter names and shapes."""
    return all(a.get(k) == b.get(k) for k in ARCH_KEYS)


def byte_tokenizer(vocab_size: int):
    """The byte-level test tokenizer (:func:`harness.models.tiny_tokenizer`: ChatML template, pad/eos/im_start),
    padded with filler tokens to ``vocab_size`` ids. Fillers are strings of 2-3 byte symbols that encoding never
    produces (no merges), but they decode, so the output of a random model with Llama 3's vocabulary is text, as
    vLLM's detokenizer needs. Prompts are about 4x longer in tokens than with Llama 3's tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from harness.models import CHATML_TEMPLATE, tiny_tokenizer

    if vocab_size <= TINY_VOCAB:
        if vocab_size < TINY_VOCAB:
            raise ValueError(f"vocab_size {vocab_size} is below the byte-level tokenizer's {TINY_VOCAB}")
        return tiny_tokenizer()
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    for i, special in enumerate(("<pad>", "<|im_end|>", "<|im_start|>")):
        vocab[special] = len(alphabet) + i
    need = vocab_size - len(vocab)
    fillers = (a + b for a in alphabet for b in alphabet)
    triples = (a + b + c for a in alphabet for b in alphabet for c in alphabet)
    for word in itertools.chain(fillers, triples):
        if need == 0:
            break
        vocab[word] = len(vocab)
        need -= 1
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    fast.add_special_tokens({"pad_token": "<pad>", "eos_token": "<|im_end|>",
                             "additional_special_tokens": ["<|im_start|>"]})
    fast.chat_template = CHATML_TEMPLATE
    if len(fast) != vocab_size:
        raise AssertionError(f"padded tokenizer has {len(fast)} ids, wanted {vocab_size}")
    return fast
