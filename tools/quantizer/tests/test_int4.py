"""The INT4 rule and packing against kernels/cpu/w4a4_reference and kernels/w4a4_format.h, and
the fake-quant linear against an explicit integer GEMM."""
import numpy as np

from tools.quantizer.int4 import (dequantize, pack_int4, pad_k, quantize_symmetric,
                                  unpack_int4)
from tools.quantizer.model import ActQuant, Linear


def test_rule_matches_reference_definition():
    # absmax 7 -> scale 1: 2.5 rounds half to even (2), -3.5 to -4; all-zero group -> scale 0.
    x = np.array([[7.0, 2.5, -3.5, 0.49] + [0.0] * 4, [0.0] * 8], dtype=np.float32)
    q, scales = quantize_symmetric(x, 4, 1.0)
    assert q[0, :4].tolist() == [7, 2, -4, 0]
    assert scales.tolist() == [[1.0, 0.0], [0.0, 0.0]]
    assert not q[1].any()


def test_clip_ratio_clamps_to_seven():
    x = np.array([[10.0, -10.0, 5.0, 1.0]], dtype=np.float32)
    q, scales = quantize_symmetric(x, 4, 0.5)
    assert q.tolist() == [[7, -7, 7, 1]]
    np.testing.assert_allclose(scales, [[5.0 / 7.0]], rtol=1e-7)


def test_packing_is_low_nibble_first_twos_complement():
    packed = pack_int4(np.array([[-8, 7, -1, -7]], dtype=np.int8))
    assert packed.tolist() == [[0x78, 0x9F]]  # PackInt4Pair(-8, 7) == 0x78 in w4a4_format.h
    codes = np.random.default_rng(0).integers(-8, 8, size=(5, 64)).astype(np.int8)
    np.testing.assert_array_equal(unpack_int4(pack_int4(codes)), codes)


def test_fake_quant_linear_equals_integer_gemm():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 200)).astype(np.float32)
    w = rng.standard_normal((5, 256)).astype(np.float32)
    qw, sw = quantize_symmetric(w, 128, 1.0)
    linear = Linear(dequantize(qw, sw, 128), act_quant=ActQuant(128, 0.9))
    qx, sx = quantize_symmetric(pad_k(x, 256), 128, 0.9)
    partials = np.einsum("mgk,ngk->mng", qx.reshape(3, 2, 128).astype(np.int32),
                         qw.reshape(5, 2, 128).astype(np.int32))
    expected = np.einsum("mg,ng,mng->mn", sx.astype(np.float64), sw.astype(np.float64), partials)
    np.testing.assert_allclose(linear(x), expected, rtol=1e-5, atol=1e-5)
