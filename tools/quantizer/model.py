"""Numpy llama forward (GGUF conventions) whose linear layers may be W4A4 fake-quantized.

A quantized linear reproduces the integer W4A4 arithmetic up to float summation order: the input
is padded to k_padded, optionally rotated by the online block Hadamard, quantized by the exact
reference rule and dequantized, then multiplied by the dequantized INT4 weights. Both sides hold
exactly the values the integer GEMM multiplies, so Y = sum_g sx*sw*sum(qx*qw).
"""
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from .gguf_loader import LINEAR_NAMES, ModelConfig
from .hadamard import block_hadamard
from .int4 import INT4_MAX, INT8_MAX, fake_quantize, pad_k


@dataclass(frozen=True)
class ActQuant:
    group_size: int  # == k_padded for per-token, 128 for group-128
    clip_ratio: float
    qmax: int = INT4_MAX  # 7 (INT4); INT8_MAX only to measure how much A4 costs against A8


@dataclass
class Outliers:
    """Atom-style: input channels carried in INT8 (per-token activations, per-row weights)."""
    channels: np.ndarray  # int32 [c], sorted
    weight: np.ndarray    # float32 [N, c], dequantized INT8


@dataclass
class Linear:
    weight: np.ndarray  # float32 [N, k_padded]; dequantized INT4 when act_quant is set
    input_hadamard_block: Optional[int] = None
    act_quant: Optional[ActQuant] = None
    outliers: Optional[Outliers] = None
    # Called with the prepared (padded, rotated) input; calibration collects statistics with it.
    observer: Optional[Callable[[np.ndarray], None]] = None

    def prepare_input(self, x: np.ndarray) -> np.ndarray:
        x = pad_k(x, self.weight.shape[1])
        if self.input_hadamard_block:
            x = block_hadamard(x, self.input_hadamard_block)
        return x

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = self.prepare_input(x)
        if self.observer is not None:
            self.observer(x)
        return self.apply_prepared(x)

    def apply_prepared(self, x: np.ndarray) -> np.ndarray:
        """The layer on an input already padded and rotated by prepare_input."""
        y = None
        if self.outliers is not None:
            channels = self.outliers.channels
            xo = fake_quantize(x[..., channels], len(channels), 1.0, INT8_MAX)
            y = xo @ self.outliers.weight.T
            x = x.copy()
            x[..., channels] = 0.0
        if self.act_quant is not None:
            q = self.act_quant
            x = fake_quantize(x, q.group_size, q.clip_ratio, q.qmax)
        out = x @ self.weight.T
        return out if y is None else out + y


@dataclass(frozen=True)
class KvCacheQuant:
    """4-bit KV cache: symmetric INT4 per token per head; keys optionally rotated by H_head_dim."""
    key_clip_ratio: float = 1.0
    value_clip_ratio: float = 1.0
    key_hadamard: bool = True


@dataclass
class Block:
    attn_norm: np.ndarray
    ffn_norm: np.ndarray
    linears: dict  # name in LINEAR_NAMES -> Linear


@dataclass
class LlamaModel:
    config: ModelConfig
    token_embd: np.ndarray
    output_norm: np.ndarray
    output: np.ndarray
    blocks: list
    kv_quant: Optional[KvCacheQuant] = None

    @classmethod
    def from_weights(cls, config: ModelConfig, weights: dict, ffn_down_hadamard: bool = False):
        """A float model; ffn_down_hadamard for weights rotated to expect the online Hadamard."""
        blocks = []
        for i in range(config.num_layers):
            linears = {n: Linear(weights[f"blk.{i}.{n}.weight"]) for n in LINEAR_NAMES}
            if ffn_down_hadamard:
                linears["ffn_down"].input_hadamard_block = 128
            blocks.append(Block(weights[f"blk.{i}.attn_norm.weight"],
                                weights[f"blk.{i}.ffn_norm.weight"], linears))
        return cls(config, weights["token_embd.weight"], weights["output_norm.weight"],
                   weights["output.weight"], blocks)


@dataclass
class KvCache:
    """Per layer keys and values [B, S, kv_heads, head_dim] as attention reads them (already
    dequantized when the cache is 4-bit)."""
    keys: list = field(default_factory=list)
    values: list = field(default_factory=list)

    def copy(self) -> "KvCache":
        return KvCache(list(self.keys), list(self.values))


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    scale = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    return (x * scale * weight).astype(np.float32)


def rope(x: np.ndarray, positions: np.ndarray, theta: float) -> np.ndarray:
    """Rotates adjacent pairs (2i, 2i+1) of each head: llama.cpp's 'normal' RoPE, which the GGUF
    row permutation of attn_q/attn_k expects. x: [B, T, heads, head_dim]."""
    half = x.shape[-1] // 2
    freqs = theta ** (-np.arange(half, dtype=np.float64) * 2.0 / x.shape[-1])
    angles = positions[:, None] * freqs[None, :]
    cos = np.cos(angles).astype(np.float32)[None, :, None, :]
    sin = np.sin(angles).astype(np.float32)[None, :, None, :]
    even, odd = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out


def _quantize_kv(x: np.ndarray, clip_ratio: float) -> np.ndarray:
    return fake_quantize(x, x.shape[-1], clip_ratio)


def attention(block: Block, h: np.ndarray, config: ModelConfig, cache: KvCache, layer: int,
              kv_quant: Optional[KvCacheQuant]) -> np.ndarray:
    b, t, _ = h.shape
    hd, nh, nkv = config.head_dim, config.num_heads, config.num_kv_heads
    start = cache.keys[layer].shape[1] if len(cache.keys) > layer else 0
    positions = np.arange(start, start + t, dtype=np.float64)
    q = rope(block.linears["attn_q"](h).reshape(b, t, nh, hd), positions, config.rope_theta)
    k = rope(block.linears["attn_k"](h).reshape(b, t, nkv, hd), positions, config.rope_theta)
    v = block.linears["attn_v"](h).reshape(b, t, nkv, hd)
    if kv_quant is not None:
        if kv_quant.key_hadamard:  # q.k is unchanged: both sides rotated by the same orthogonal H
            q, k = block_hadamard(q, hd), block_hadamard(k, hd)
        k = _quantize_kv(k, kv_quant.key_clip_ratio)
        v = _quantize_kv(v, kv_quant.value_clip_ratio)
    if len(cache.keys) > layer:
        k = np.concatenate([cache.keys[layer], k], axis=1)
        v = np.concatenate([cache.values[layer], v], axis=1)
        cache.keys[layer], cache.values[layer] = k, v
    else:
        cache.keys.append(k)
        cache.values.append(v)
    s = k.shape[1]
    group = nh // nkv  # q head j reads kv head j // group
    # [b, kv, group * t, hd] @ [b, kv, hd, s]: plain stacked matmuls, which numpy hands to BLAS.
    qg = q.reshape(b, t, nkv, group, hd).transpose(0, 2, 3, 1, 4).reshape(b, nkv, group * t, hd)
    scores = (qg @ k.transpose(0, 2, 3, 1)) * np.float32(1.0 / np.sqrt(hd))
    future = np.arange(s)[None, :] > (start + np.arange(t))[:, None]
    scores += np.tile(np.where(future, -np.inf, 0.0).astype(np.float32), (group, 1))
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    out = scores @ v.transpose(0, 2, 1, 3)                          # [b, kv, group * t, hd]
    out = out.reshape(b, nkv, group, t, hd).transpose(0, 3, 1, 2, 4).reshape(b, t, nh * hd)
    return block.linears["attn_output"](out)


def block_forward(model: LlamaModel, layer: int, x: np.ndarray, cache: KvCache) -> np.ndarray:
    block, eps = model.blocks[layer], model.config.rms_norm_eps
    x = x + attention(block, rms_norm(x, block.attn_norm, eps), model.config, cache, layer,
                      model.kv_quant)
    h = rms_norm(x, block.ffn_norm, eps)
    gate, up = block.linears["ffn_gate"](h), block.linears["ffn_up"](h)
    with np.errstate(over="ignore"):  # exp(-gate) -> inf gives silu = -0, as it should
        act = gate / (1.0 + np.exp(-gate)) * up
    return x + block.linears["ffn_down"](act)


def forward_hidden(model: LlamaModel, tokens: np.ndarray,
                   cache: Optional[KvCache] = None) -> np.ndarray:
    """tokens [B, T] -> final normed hidden states [B, T, d]; appends to `cache` when given."""
    cache = KvCache() if cache is None else cache
    x = model.token_embd[tokens]
    for layer in range(len(model.blocks)):
        x = block_forward(model, layer, x, cache)
    return rms_norm(x, model.output_norm, model.config.rms_norm_eps)


def logits(model: LlamaModel, hidden: np.ndarray) -> np.ndarray:
    return hidden @ model.output.T
