"""Symmetric INT4 quantization with the exact rule of kernels/cpu/w4a4_reference.cc, packing in
the canonical layout of kernels/w4a4_format.h, and the INT8 rule of Atom-style outlier channels."""
import numpy as np

INT4_MAX = 7  # symmetric: codes in -7..7
INT8_MAX = 127
ALIGN_K = 128  # kPackAlignK: every packed K is a multiple of one group-128 block
GROUP_128 = 128


def padded_k(k: int) -> int:
    return -(-k // ALIGN_K) * ALIGN_K


def pad_k(x: np.ndarray, k_padded: int) -> np.ndarray:
    """Zero-pads the last axis to k_padded (padded activations and weights contribute nothing)."""
    k = x.shape[-1]
    if k == k_padded:
        return x
    pad = [(0, 0)] * (x.ndim - 1) + [(0, k_padded - k)]
    return np.pad(x, pad)


def quantize_symmetric(x: np.ndarray, group_size: int, clip_ratio, qmax: int = INT4_MAX):
    """Per group of `group_size` along the last axis, in float32 as the C++ reference:
    scale = clip * absmax / qmax, q = clamp(rint(x * (qmax / (clip * absmax))), -qmax, qmax).
    clip_ratio is a scalar or an array broadcastable to [..., groups, 1]. Returns (q int8 [..., K],
    scales float32 [..., K / group_size]); an all-zero group gets scale 0 and q 0."""
    x = np.asarray(x, dtype=np.float32)
    k = x.shape[-1]
    if k % group_size:
        raise ValueError(f"group_size {group_size} does not divide K={k}")
    grouped = x.reshape(*x.shape[:-1], k // group_size, group_size)
    absmax = np.abs(grouped).max(axis=-1, keepdims=True)
    clipped = np.asarray(clip_ratio, dtype=np.float32) * absmax
    inv_scale = np.zeros_like(clipped)
    np.divide(np.float32(qmax), clipped, out=inv_scale, where=clipped > 0)
    q = np.clip(np.rint(grouped * inv_scale), -qmax, qmax).astype(np.int8)
    scales = (clipped / np.float32(qmax))[..., 0]
    return q.reshape(x.shape), scales


def dequantize(q: np.ndarray, scales: np.ndarray, group_size: int) -> np.ndarray:
    grouped = q.reshape(*q.shape[:-1], q.shape[-1] // group_size, group_size).astype(np.float32)
    return (grouped * scales[..., None]).reshape(q.shape)


def fake_quantize(x: np.ndarray, group_size: int, clip_ratio, qmax: int = INT4_MAX) -> np.ndarray:
    """The float value each element has after quantization: what the integer GEMM multiplies."""
    q, scales = quantize_symmetric(x, group_size, clip_ratio, qmax)
    return dequantize(q, scales, group_size)


def pack_int4(q: np.ndarray) -> np.ndarray:
    """[rows, K] int codes -> [rows, K/2] uint8; even k in the low nibble, two's complement."""
    if q.shape[-1] % 2:
        raise ValueError("K must be even to pack int4")
    nibbles = (q.astype(np.int16) & 0xF).astype(np.uint8)
    return (nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)).astype(np.uint8)


def unpack_int4(packed: np.ndarray) -> np.ndarray:
    low = (packed & 0xF).astype(np.int8)
    high = (packed >> 4).astype(np.int8)
    out = np.empty(packed.shape[:-1] + (packed.shape[-1] * 2,), dtype=np.int8)
    out[..., 0::2] = np.where(low >= 8, low - 16, low)
    out[..., 1::2] = np.where(high >= 8, high - 16, high)
    return out
