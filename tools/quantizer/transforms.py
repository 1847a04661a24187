"""Computational-invariance transforms (QuaRot): fold RMSNorm weights into the next linear layers,
rotate the residual stream by a randomized Hadamard, rotate each V head, and prepare ffn_down
for the online 128-block Hadamard. The float model's outputs are unchanged (up to rounding)."""
import numpy as np

from .gguf_loader import ModelConfig
from .hadamard import block_hadamard, random_hadamard_rotation, sylvester

DOWN_HADAMARD_BLOCK = 128  # matches the kernels' normalized 128-wide FWHT

_RESIDUAL_READERS = ("attn_q", "attn_k", "attn_v", "ffn_gate", "ffn_up")
_RESIDUAL_WRITERS = ("attn_output", "ffn_down")


def fold_norms(config: ModelConfig, weights: dict) -> dict:
    """W <- W diag(g) for each linear after an RMSNorm with weight g; g <- 1. Needed before the
    rotation: RMSNorm commutes with an orthogonal Q only when it has no per-channel weight."""
    out = dict(weights)
    ones = np.ones(config.hidden_size, dtype=np.float32)
    for i in range(config.num_layers):
        for norm, readers in (("attn_norm", ("attn_q", "attn_k", "attn_v")),
                              ("ffn_norm", ("ffn_gate", "ffn_up"))):
            g = weights[f"blk.{i}.{norm}.weight"]
            for r in readers:
                out[f"blk.{i}.{r}.weight"] = weights[f"blk.{i}.{r}.weight"] * g
            out[f"blk.{i}.{norm}.weight"] = ones
    out["output.weight"] = weights["output.weight"] * weights["output_norm.weight"]
    out["output_norm.weight"] = ones
    return out


def rotate(config: ModelConfig, weights: dict, seed: int) -> tuple[dict, dict]:
    """Returns rotated weights (norms folded first) and the metadata describing the rotation.
    Residual x' = x Q: embeddings E Q, readers W Q, writers Q^T W. V heads: rows of attn_v and
    columns of attn_output per head times H_64/8 (folded, no online work). ffn_down: W B with B
    the 128-block normalized Hadamard, which the engine applies online to ffn_down's input."""
    folded = fold_norms(config, weights)
    q = random_hadamard_rotation(config.hidden_size, seed)
    hd = config.head_dim
    head_h = sylvester(hd) / np.sqrt(hd)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731

    out = dict(folded)
    out["token_embd.weight"] = f32(folded["token_embd.weight"] @ q)
    out["output.weight"] = f32(folded["output.weight"] @ q)
    for i in range(config.num_layers):
        name = lambda n: f"blk.{i}.{n}.weight"  # noqa: E731
        for r in _RESIDUAL_READERS:
            out[name(r)] = folded[name(r)].astype(np.float64) @ q
        for w in _RESIDUAL_WRITERS:
            out[name(w)] = q.T @ folded[name(w)].astype(np.float64)
        v = out[name("attn_v")].reshape(config.num_kv_heads, hd, -1)
        out[name("attn_v")] = np.einsum("ij,hjk->hik", head_h, v).reshape(-1, v.shape[-1])
        o = out[name("attn_output")].reshape(-1, config.num_heads, hd)
        out[name("attn_output")] = (o @ head_h).reshape(o.shape[0], -1)
        out[name("ffn_down")] = block_hadamard(out[name("ffn_down")], DOWN_HADAMARD_BLOCK)
        for n in _RESIDUAL_READERS + _RESIDUAL_WRITERS:
            out[name(n)] = f32(out[name(n)])
    meta = {"norms_folded": True,
            "residual": {"kind": "hadamard_kronecker_random_signs",
                         "size": config.hidden_size, "seed": seed},
            "attn_v_heads": {"kind": "hadamard_sylvester", "block": hd}}
    return out, meta
