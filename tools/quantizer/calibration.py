"""Calibration data and per-site input statistics (Hessian x^T x and a row sample)."""
from dataclasses import dataclass, field

import numpy as np

from .gguf_loader import QuantizerError
from .tokenizer import encode_prefix

# Linears sharing an input site: the first name of each tuple carries the observer.
SITES = (("attn_q", "attn_k", "attn_v"), ("attn_output",), ("ffn_gate", "ffn_up"), ("ffn_down",))
SITE_OF = {name: site[0] for site in SITES for name in site}


# Calibration files with this suffix hold token ids (whitespace-separated), not text: they need
# no tokenizer, for machines without llama-cpp-python (`python3 -m tools.quantizer
# calibration-ids` writes one).
TOKEN_IDS_SUFFIX = ".ids"


def calibration_tokens(tokenizer, path: str, count: int) -> np.ndarray:
    """At least `count` tokens (or all there are) from the start of a calibration text; all the
    ids of an .ids file (written by `calibration-ids --tokens count`, the same tokens)."""
    try:
        with open(path, encoding="utf-8") as f:
            if path.endswith(TOKEN_IDS_SUFFIX):
                return np.array(f.read().split(), dtype=np.int64)
            return encode_prefix(tokenizer, f.read(), count)
    except (OSError, ValueError) as e:
        raise QuantizerError(f"cannot read calibration file {path}: {e}") from e


def calibration_batch(tokenizer, path: str, sequences: int, length: int, seed: int) -> np.ndarray:
    """`sequences` random windows of `length` tokens from the calibration file (its first
    8 * sequences * length tokens): [S, L] int64."""
    tokens = calibration_tokens(tokenizer, path, 8 * sequences * length)
    if len(tokens) < length + 1:
        raise QuantizerError(f"calibration text has {len(tokens)} tokens, fewer than {length}")
    starts = np.random.default_rng(seed).integers(0, len(tokens) - length, size=sequences)
    return np.stack([tokens[s:s + length] for s in starts])


@dataclass
class SiteStats:
    """Accumulates H = sum x x^T (float64; only its diagonal unless `full_hessian`, which GPTQ
    alone needs) and keeps up to `max_samples` random input rows."""
    max_samples: int
    rows_per_call: int
    rng: np.random.Generator
    full_hessian: bool
    hessian: np.ndarray = None
    samples: list = field(default_factory=list)
    tokens: int = 0

    def __call__(self, x: np.ndarray) -> None:
        rows = x.reshape(-1, x.shape[-1])
        if self.full_hessian:
            gram = (rows.T @ rows).astype(np.float64)
        else:
            gram = np.diag(np.einsum("tk,tk->k", rows, rows, dtype=np.float64))
        self.hessian = gram if self.hessian is None else self.hessian + gram
        self.tokens += len(rows)
        if sum(len(s) for s in self.samples) < self.max_samples:
            pick = self.rng.choice(len(rows), size=min(self.rows_per_call, len(rows)),
                                   replace=False)
            self.samples.append(rows[np.sort(pick)])

    def sample_matrix(self) -> np.ndarray:
        return np.concatenate(self.samples)[:self.max_samples]

    def channel_rms(self) -> np.ndarray:
        return np.sqrt(np.diag(self.hessian) / max(self.tokens, 1))
