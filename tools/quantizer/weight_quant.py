"""INT4 weight quantization: round-to-nearest with an optional per-group MSE clipping search,
and GPTQ (Frantar et al. 2022) with the same scale choice at each group's start."""
import numpy as np

from .int4 import INT4_MAX, dequantize, quantize_symmetric

# Clip ratios tried per (row, group); the scale is ratio * absmax / 7.
WEIGHT_CLIP_GRID = np.linspace(1.0, 0.7, 7, dtype=np.float32)


def choose_scales(w: np.ndarray, group_size: int, clip_search: bool) -> np.ndarray:
    """Scales [N, K / group_size] minimising the squared rounding error of each group."""
    if not clip_search:
        return quantize_symmetric(w, group_size, 1.0)[1]
    best_err, best_scales = None, None
    for ratio in WEIGHT_CLIP_GRID:
        q, scales = quantize_symmetric(w, group_size, ratio)
        err = ((dequantize(q, scales, group_size) - w) ** 2).reshape(*scales.shape, -1).sum(-1)
        if best_err is None:
            best_err, best_scales = err, scales
        else:
            better = err < best_err
            best_err = np.where(better, err, best_err)
            best_scales = np.where(better, scales, best_scales)
    return best_scales


def round_to_scales(w: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Codes for w given per-column scales (broadcastable to w); zero scale gives code 0."""
    inv = np.zeros_like(scales)
    np.divide(1.0, scales, out=inv, where=scales > 0)
    return np.clip(np.rint(w * inv), -INT4_MAX, INT4_MAX)


def rtn(w: np.ndarray, group_size: int, clip_search: bool) -> tuple[np.ndarray, np.ndarray]:
    scales = choose_scales(w, group_size, clip_search)
    expanded = np.repeat(scales, group_size, axis=1)
    return round_to_scales(w, expanded).astype(np.int8), scales


def gptq(w: np.ndarray, hessian: np.ndarray, group_size: int, clip_search: bool,
         damp: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """GPTQ on w [N, K] with H = sum x x^T over calibration inputs [K, K]. Columns are quantized
    in order; each one's rounding error is spread over the later columns through the inverse
    Hessian's Cholesky factor. Group scales are chosen when a group starts, on the updated
    weights. Returns (codes int8 [N, K], scales float32 [N, K / group_size])."""
    n, k = w.shape
    w = w.astype(np.float64).copy()
    h = hessian.astype(np.float64).copy()
    dead = np.diag(h) == 0  # channels never active (padding, Atom outliers): weight irrelevant
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h[np.diag_indices(k)] += damp * np.mean(np.diag(h))
    hinv = np.linalg.cholesky(np.linalg.inv(h)).T  # upper factor, as in the GPTQ reference
    codes = np.zeros((n, k), dtype=np.int8)
    scales = np.zeros((n, k // group_size), dtype=np.float32)
    if group_size == k:
        scales[:] = choose_scales(w.astype(np.float32), k, clip_search)
    block = 128
    for b0 in range(0, k, block):
        b1 = min(b0 + block, k)
        wb = w[:, b0:b1].copy()
        errors = np.zeros_like(wb)
        hb = hinv[b0:b1, b0:b1]
        for i in range(b1 - b0):
            col = b0 + i
            if group_size < k and col % group_size == 0:
                g = col // group_size
                group = wb[:, i:i + group_size] if i + group_size <= b1 - b0 else \
                    np.concatenate([wb[:, i:], w[:, b1:col + group_size]], axis=1)
                scales[:, g] = choose_scales(group.astype(np.float32), group_size,
                                             clip_search)[:, 0]
            s = scales[:, col // group_size].astype(np.float64)
            q = round_to_scales(wb[:, i], s)
            codes[:, col] = q
            err = (wb[:, i] - q * s) / hb[i, i]
            wb[:, i:] -= np.outer(err, hb[i, i:])
            errors[:, i] = err
        w[:, b1:] -= errors @ hinv[b0:b1, b1:]
    return codes, scales
