"""Hadamard constructions, QuaRot invariance of the float model, and GPTQ's error reduction."""
import numpy as np

from tools.quantizer.hadamard import block_hadamard, hadamard, sylvester
from tools.quantizer.int4 import dequantize
from tools.quantizer.model import LlamaModel, forward_hidden, logits
from tools.quantizer.transforms import rotate
from tools.quantizer.weight_quant import gptq, rtn

from .tiny_model import TINY, tiny_weights


def test_hadamard_576_exists_and_is_orthogonal():
    h = hadamard(576)  # H_12 (x) H_12 (x) H_4
    assert set(np.unique(h)) == {-1.0, 1.0}
    np.testing.assert_array_equal(h @ h.T, 576 * np.eye(576))


def test_block_hadamard_is_the_normalized_sylvester_fwht():
    # Sylvester ordering: row 1 of H_128 alternates signs, so y[1] = sum((-1)^i x_i) / sqrt(128).
    x = np.random.default_rng(0).standard_normal((2, 256)).astype(np.float32)
    y = block_hadamard(x, 128)
    signs = np.tile([1.0, -1.0], 64)
    np.testing.assert_allclose(y[:, 129], x[:, 128:] @ signs / np.sqrt(128), rtol=1e-5)
    np.testing.assert_allclose(block_hadamard(y, 128), x, atol=1e-5)  # involution
    np.testing.assert_array_equal(sylvester(2), [[1, 1], [1, -1]])


def test_rotation_keeps_the_float_model_output():
    weights = tiny_weights()
    tokens = np.arange(20)[None] % TINY.vocab_size
    base = LlamaModel.from_weights(TINY, weights)
    rotated_weights, meta = rotate(TINY, weights, seed=3)
    rotated = LlamaModel.from_weights(TINY, rotated_weights, ffn_down_hadamard=True)
    np.testing.assert_allclose(logits(rotated, forward_hidden(rotated, tokens)),
                               logits(base, forward_hidden(base, tokens)), atol=2e-4)
    assert meta["norms_folded"] and meta["residual"]["size"] == TINY.hidden_size
    np.testing.assert_array_equal(rotated_weights["blk.0.attn_norm.weight"], 1.0)


def test_gptq_beats_rtn_on_correlated_inputs():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2048, 32)) @ rng.standard_normal((32, 256))
    w = rng.standard_normal((16, 256)).astype(np.float32)
    for group in (256, 128):
        q, s = rtn(w, group, clip_search=True)
        err_rtn = np.linalg.norm(x @ (dequantize(q, s, group) - w).T)
        q, s = gptq(w, x.T @ x, group, clip_search=True)
        assert np.abs(q).max() <= 7
        assert np.linalg.norm(x @ (dequantize(q, s, group) - w).T) < 0.6 * err_rtn
