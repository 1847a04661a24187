"""The checkpoint writer and reader on a tiny model quantized end to end (QuaRot + GPTQ, Atom)."""
import json
import os

import numpy as np
import pytest

from tools.quantizer.checkpoint import METADATA_FILE, TENSOR_FILE, read_checkpoint, \
    write_checkpoint
from tools.quantizer.gguf_loader import QuantizerError
from tools.quantizer.model import forward_hidden, logits
from tools.quantizer.quantize import QuantOptions, quantize_model

from .tiny_model import TINY, ByteTokenizer, tiny_weights


@pytest.fixture(scope="module")
def calib_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("calib") / "text.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 80)
    return str(path)


def _quantize(calib_file, **kw):
    opts = QuantOptions(calib_path=calib_file, calib_seqs=4, calib_len=64, **kw)
    qm = quantize_model(TINY, tiny_weights(), ByteTokenizer(), opts, log=lambda m: None)
    qm.source = {"kind": "gguf", "file": "tiny.gguf", "sha256": "0" * 64, "tokenizer": "gguf"}
    return qm


def _logits(qm, tokens=np.arange(12)[None]):
    model = qm.build_model()
    return logits(model, forward_hidden(model, tokens))


@pytest.mark.parametrize("kw", [dict(method="quarot", gptq=True, granularity="mixed", kv_bits=4),
                                dict(method="atom", granularity="g128")])
def test_round_trip(tmp_path, calib_file, kw):
    qm = _quantize(calib_file, **kw)
    write_checkpoint(str(tmp_path), qm)
    loaded = read_checkpoint(str(tmp_path))
    assert loaded.config == qm.config and loaded.kv_quant == qm.kv_quant
    assert loaded.meta == json.loads(json.dumps(qm.meta))
    assert [(l.name, l.granularity, l.online_hadamard) for l in loaded.layers] == \
        [(l.name, l.granularity, l.online_hadamard) for l in qm.layers]
    np.testing.assert_array_equal(_logits(loaded), _logits(qm))
    meta = json.load(open(tmp_path / METADATA_FILE))
    down = meta["layers"][6]
    assert down["name"] == "blk.0.ffn_down" and down["k_padded"] == 256
    assert meta["tensors"][down["variants"]["g128"]["qweight"]]["shape"] == [64, 128]
    assert set(down["sensitivity"]) == {"rel_err_per_channel", "rel_err_g128",
                                        "per_channel_over_g128"}


def test_corrupt_tensor_is_refused(tmp_path, calib_file):
    write_checkpoint(str(tmp_path), _quantize(calib_file, method="rtn"))
    path = tmp_path / TENSOR_FILE
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x40  # a byte of the last tensor's data
    path.write_bytes(bytes(raw))
    with pytest.raises(QuantizerError, match="sha256 mismatch"):
        read_checkpoint(str(tmp_path))


def test_truncated_file_is_refused(tmp_path, calib_file):
    write_checkpoint(str(tmp_path), _quantize(calib_file, method="rtn"))
    path = tmp_path / TENSOR_FILE
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(QuantizerError, match="do not fit"):
        read_checkpoint(str(tmp_path))


def test_mismatched_shapes_are_refused(tmp_path, calib_file):
    qm = _quantize(calib_file, method="rtn")
    variant = qm.layers[6].variants["g128"]  # blk.0.ffn_down: 2 groups
    good_scales = variant.scales
    variant.scales = good_scales[:, :1]
    with pytest.raises(QuantizerError, match="scales: shape"):
        write_checkpoint(str(tmp_path / "bad"), qm)
    variant.scales = good_scales
    write_checkpoint(str(tmp_path / "good"), qm)
    meta_path = os.path.join(tmp_path, "good", METADATA_FILE)
    meta = json.load(open(meta_path))
    meta["tensors"]["blk.0.ffn_down.scales.g128"]["shape"] = [64, 3]
    json.dump(meta, open(meta_path, "w"))
    with pytest.raises(QuantizerError, match="metadata says"):
        read_checkpoint(os.path.join(tmp_path, "good"))
