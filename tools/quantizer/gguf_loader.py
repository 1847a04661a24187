"""Reads a llama-architecture GGUF into float32 numpy weights (the full-precision reference)."""
import hashlib
from dataclasses import asdict, dataclass

import numpy as np

# The seven linear layers of a llama block, in GGUF naming and forward order.
LINEAR_NAMES = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


class QuantizerError(Exception):
    """A user-facing error: bad input file, option or shape. The CLI prints it and exits 1."""


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float
    rms_norm_eps: float
    context_length: int
    bos_token_id: int
    eos_token_id: int

    def to_json(self) -> dict:
        # rope_style: q/k rows keep GGUF order, so RoPE rotates adjacent pairs (FORMAT.md).
        return {"architecture": "llama", "rope_style": "adjacent_pairs", **asdict(self)}

    @classmethod
    def from_json(cls, meta: dict) -> "ModelConfig":
        if meta.get("architecture") != "llama" or meta.get("rope_style") != "adjacent_pairs":
            raise QuantizerError(f"unsupported model: {meta.get('architecture')} / "
                                 f"{meta.get('rope_style')}")
        return cls(**{k: meta[k] for k in cls.__dataclass_fields__})


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _field(reader, key: str):
    field = reader.fields.get(key)
    if field is None:
        raise QuantizerError(f"GGUF has no metadata key '{key}'")
    return field.contents()


def load_gguf(path: str) -> tuple[ModelConfig, dict[str, np.ndarray]]:
    """Returns the config and every tensor dequantized to float32, shaped [rows, cols] (row-major,
    i.e. GGUF's ne reversed). A missing LM head (tied embeddings) is materialised as output.weight."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    try:
        reader = GGUFReader(path)
    except (OSError, ValueError) as e:
        raise QuantizerError(f"cannot read GGUF '{path}': {e}") from e
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise QuantizerError(f"'{path}': architecture '{arch}', only 'llama' is supported")
    heads = int(_field(reader, "llama.attention.head_count"))
    hidden = int(_field(reader, "llama.embedding_length"))
    config = ModelConfig(
        vocab_size=int(_field(reader, "llama.vocab_size")),
        hidden_size=hidden,
        intermediate_size=int(_field(reader, "llama.feed_forward_length")),
        num_layers=int(_field(reader, "llama.block_count")),
        num_heads=heads,
        num_kv_heads=int(_field(reader, "llama.attention.head_count_kv")),
        head_dim=hidden // heads,
        rope_theta=float(_field(reader, "llama.rope.freq_base")),
        rms_norm_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
        context_length=int(_field(reader, "llama.context_length")),
        bos_token_id=int(_field(reader, "tokenizer.ggml.bos_token_id")),
        eos_token_id=int(_field(reader, "tokenizer.ggml.eos_token_id")),
    )
    weights = {}
    for tensor in reader.tensors:
        shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
        weights[tensor.name] = np.ascontiguousarray(
            dequantize(tensor.data, tensor.tensor_type).reshape(shape), dtype=np.float32)
    weights.setdefault("output.weight", weights["token_embd.weight"])
    _check_shapes(config, weights)
    return config, weights


def expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    d, f = config.hidden_size, config.intermediate_size
    kv = config.num_kv_heads * config.head_dim
    shapes = {"token_embd.weight": (config.vocab_size, d), "output.weight": (config.vocab_size, d),
              "output_norm.weight": (d,)}
    linear = {"attn_q": (d, d), "attn_k": (kv, d), "attn_v": (kv, d), "attn_output": (d, d),
              "ffn_gate": (f, d), "ffn_up": (f, d), "ffn_down": (d, f)}
    for i in range(config.num_layers):
        shapes[f"blk.{i}.attn_norm.weight"] = (d,)
        shapes[f"blk.{i}.ffn_norm.weight"] = (d,)
        for name, shape in linear.items():
            shapes[f"blk.{i}.{name}.weight"] = shape
    return shapes


def _check_shapes(config: ModelConfig, weights: dict[str, np.ndarray]) -> None:
    for name, shape in expected_shapes(config).items():
        if name not in weights:
            raise QuantizerError(f"GGUF lacks tensor '{name}'")
        if weights[name].shape != shape:
            raise QuantizerError(f"tensor '{name}' has shape {weights[name].shape}, "
                                 f"expected {shape}")
