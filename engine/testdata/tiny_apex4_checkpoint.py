#!/usr/bin/env python3
"""Writes a small apex4 checkpoint with the quantizer's own pipeline, and the quantizer's numpy
numbers for it, for the C++ reader, model and evaluation tests.

  tiny_apex4_checkpoint.py SOURCE.gguf TEXT HELLASWAG CALIBRATION OUT_DIR

The model is a random 2-block llama with SmolLM2's vocabulary size, so that the engine serves
it with the real GGUF's tokenizer: OUT_DIR/<gguf> links to SOURCE.gguf (the checkpoint's
recorded source) and OUT_DIR/tiny.apex4 is the checkpoint (QuaRot + GPTQ, mixed granularity:
every layer stores both variants, ffn_down carries the online Hadamard, K=192 is padded to 256);
OUT_DIR/tiny_atom.apex4 is the same model Atom-style (group-128, INT8 outlier channels).
OUT_DIR/tiny_kv4.apex4 is tiny.apex4 with a 4-bit KV cache (keys rotated by H_64, clip ratios
KV4_KEY_CLIP and KV4_VALUE_CLIP, so that the engine must read them).
OUT_DIR/reference.json holds, per granularity plan, the log-probabilities of the first window's
tokens, the perplexity over REF_WINDOWS windows of REF_CONTEXT tokens of TEXT, and the HellaSwag
accuracy on the first REF_TASKS tasks, and the first window's log-probabilities under the Atom
checkpoint ("atom") and, with their perplexity, under the 4-bit KV cache checkpoint ("kv4"), all
computed by tools/quantizer's numpy forward.
"""
import dataclasses
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tools.quantizer.checkpoint import read_checkpoint, write_checkpoint  # noqa: E402
from tools.quantizer.evaluate import (_token_logprobs, hellaswag, perplexity,  # noqa: E402
                                     read_hellaswag)
from tools.quantizer.gguf_loader import ModelConfig, expected_shapes, file_sha256  # noqa: E402
from tools.quantizer.model import KvCacheQuant, forward_hidden  # noqa: E402
from tools.quantizer.quantize import QuantOptions, quantize_model  # noqa: E402
from tools.quantizer.tokenizer import GgufTokenizer  # noqa: E402

REF_CONTEXT = 128
REF_WINDOWS = 2
REF_TASKS = 12
KV4_KEY_CLIP = 0.9
KV4_VALUE_CLIP = 0.95
CONFIG = ModelConfig(vocab_size=49152, hidden_size=192, intermediate_size=384, num_layers=2,
                     num_heads=3, num_kv_heads=1, head_dim=64, rope_theta=10000.0,
                     rms_norm_eps=1e-5, context_length=512, bos_token_id=1, eos_token_id=2)


def random_weights(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in expected_shapes(CONFIG).items():
        if len(shape) == 1:
            weights[name] = (1.0 + 0.2 * rng.standard_normal(shape)).astype(np.float32)
        else:
            weights[name] = (rng.standard_normal(shape) / np.sqrt(shape[1])).astype(np.float32)
    return weights


def main(gguf: str, text_path: str, hellaswag_path: str, calib: str, out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    tokenizer = GgufTokenizer(gguf)
    opts = QuantOptions(method="quarot", gptq=True, granularity="mixed", calib_path=calib,
                        calib_seqs=4, calib_len=64)
    qm = quantize_model(CONFIG, random_weights(), tokenizer, opts, log=lambda m: None)
    qm.source = {"kind": "gguf", "file": os.path.basename(gguf), "sha256": file_sha256(gguf),
                 "tokenizer": "gguf"}
    checkpoint = os.path.join(out_dir, "tiny.apex4")
    write_checkpoint(checkpoint, qm)
    kv4_checkpoint = os.path.join(out_dir, "tiny_kv4.apex4")
    write_checkpoint(kv4_checkpoint, dataclasses.replace(
        qm, kv_quant=KvCacheQuant(KV4_KEY_CLIP, KV4_VALUE_CLIP, key_hadamard=True)))
    atom_opts = QuantOptions(method="atom", granularity="g128", calib_path=calib, calib_seqs=4,
                             calib_len=64)
    atom = quantize_model(CONFIG, random_weights(), tokenizer, atom_opts, log=lambda m: None)
    atom.source = qm.source
    write_checkpoint(os.path.join(out_dir, "tiny_atom.apex4"), atom)
    link = os.path.join(out_dir, os.path.basename(gguf))
    if not os.path.exists(link):
        os.symlink(os.path.abspath(gguf), link)

    with open(text_path, encoding="utf-8") as f:
        tokens = tokenizer.encode(f.read(REF_CONTEXT * REF_WINDOWS * 8))
    tasks = read_hellaswag(hellaswag_path, REF_TASKS)
    window = tokens[:REF_CONTEXT]
    reference = {"context": REF_CONTEXT, "windows": REF_WINDOWS, "tasks": REF_TASKS,
                 "window_tokens": window.tolist()}
    for plan in ("configured", "per_channel", "g128"):
        read_back = read_checkpoint(checkpoint)
        if plan != "configured":
            for layer in read_back.layers:
                layer.granularity = plan
        model = read_back.build_model()
        hidden = forward_hidden(model, window[None])[0]
        reference[plan] = {
            "log_probs": _token_logprobs(model, hidden[:-1], window[1:]).tolist(),
            "perplexity": perplexity(model, tokens, REF_CONTEXT, REF_WINDOWS)["perplexity"],
            "hellaswag_accuracy": hellaswag(model, tokenizer, tasks)["accuracy"],
        }
    model = read_checkpoint(os.path.join(out_dir, "tiny_atom.apex4")).build_model()
    hidden = forward_hidden(model, window[None])[0]
    reference["atom"] = {"log_probs": _token_logprobs(model, hidden[:-1], window[1:]).tolist()}
    model = read_checkpoint(kv4_checkpoint).build_model()
    assert model.kv_quant == KvCacheQuant(KV4_KEY_CLIP, KV4_VALUE_CLIP, key_hadamard=True)
    hidden = forward_hidden(model, window[None])[0]
    reference["kv4"] = {
        "log_probs": _token_logprobs(model, hidden[:-1], window[1:]).tolist(),
        "perplexity": perplexity(model, tokens, REF_CONTEXT, REF_WINDOWS)["perplexity"],
    }
    with open(os.path.join(out_dir, "reference.json"), "w", encoding="utf-8") as f:
        json.dump(reference, f)


if __name__ == "__main__":
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    main(*sys.argv[1:])
