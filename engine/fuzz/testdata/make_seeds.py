#!/usr/bin/env python3
"""Writes the seed corpora of the engine fuzzers under engine/fuzz/testdata/<fuzzer>/.

  make_seeds.py MODEL.gguf

Seeds are small real inputs: the first KiB of the default model's GGUF, tiny GGUF files written
with the gguf package (every metadata type; a byte-level BPE tokenizer), safetensors files
written with the safetensors package, a micro apex4 checkpoint written by tools/quantizer, and
text lines for the tokenizer. Values are fixed; re-running may only reorder JSON keys in the
safetensors headers.
"""
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, ROOT)
OUT = os.path.dirname(os.path.abspath(__file__))
APEX4_SEPARATOR = b"\n#model.safetensors#\n"  # as in apex4_checkpoint_fuzzer.cc


def out(fuzzer, name, data):
    os.makedirs(os.path.join(OUT, fuzzer), exist_ok=True)
    with open(os.path.join(OUT, fuzzer, name), "wb") as f:
        f.write(data)


def gguf_bytes(fill):
    import gguf
    path = os.path.join(OUT, ".tmp.gguf")
    writer = gguf.GGUFWriter(path, "llama")
    fill(writer)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with open(path, "rb") as f:
        data = f.read()
    os.remove(path)
    return data


def gguf_seeds(model):
    import gguf
    with open(model, "rb") as f:
        out("gguf_reader", "smollm2_first_1k.gguf", f.read(1024))

    def all_types(w):
        w.add_uint32("t.u32", 7)
        w.add_int32("t.i32", -7)
        w.add_uint8("t.u8", 1)
        w.add_int16("t.i16", -2)
        w.add_uint64("t.u64", 1 << 40)
        w.add_float32("t.f32", 0.5)
        w.add_float64("t.f64", 1e-5)
        w.add_bool("t.bool", True)
        w.add_string("t.str", "héllo")
        w.add_array("t.ints", [1, 2, 3])
        w.add_array("t.strs", ["a", "bc"])
        w.add_array("t.floats", [0.25, 1.5])
        w.add_tensor("w", np.arange(8, dtype=np.float32).reshape(2, 4))
        w.add_tensor("h", np.ones(32, dtype=np.float16))
    out("gguf_reader", "all_types.gguf", gguf_bytes(all_types))

    def tokenizer(w):
        tokens = ["a", "b", "ab", "Ġ", "Ġab", "<|endoftext|>", "<|im_start|>"]
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("smollm")
        w.add_token_list(tokens)
        w.add_token_types([1, 1, 1, 1, 1, 3, 3])
        w.add_token_merges(["a b", "Ġ ab"])
        w.add_bos_token_id(5)
        w.add_eos_token_id(5)
        w.add_chat_template("{{ messages }}")
        w.add_tensor("token_embd.weight", np.zeros((7, 4), dtype=np.float32))
    out("gguf_reader", "tokenizer.gguf", gguf_bytes(tokenizer))

    # The real model's scalar metadata (llama.*, general.*) with no arrays or tensors, so that
    # the model config reader gets a valid input.
    reader = gguf.GGUFReader(model)

    def model_metadata(w):
        for field in reader.fields.values():
            if field.name.startswith("GGUF.") or field.name == "general.architecture":
                continue
            kind = field.types[0]
            if kind == gguf.GGUFValueType.ARRAY:
                continue
            if kind == gguf.GGUFValueType.STRING:
                w.add_string(field.name, bytes(field.parts[field.data[0]]).decode())
            else:
                w.add_key_value(field.name, field.parts[field.data[0]][0].item(), kind)
    out("gguf_reader", "smollm2_metadata.gguf", gguf_bytes(model_metadata))


def safetensors_bytes(tensors, metadata=None):
    from safetensors.numpy import save
    return save(tensors, metadata=metadata)


def safetensors_seeds():
    out("safetensors_reader", "small.safetensors", safetensors_bytes({
        "a": (np.arange(6, dtype=np.float32) * 0.5).reshape(2, 3),
        "b": np.array([1, -2, 0.5, 65504], dtype=np.float16),
        "i": np.array([1, 2, 3], dtype=np.int64),
    }, {"format": "np", "writer": "apex4-test"}))
    out("safetensors_reader", "empty_tensor.safetensors", safetensors_bytes({
        "z": np.zeros((0, 3), dtype=np.float32),
        "u": np.arange(4, dtype=np.uint8),
    }))
    # BF16 has no numpy dtype: write the header by hand.
    header = json.dumps({"bf": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}).encode()
    out("safetensors_reader", "bf16.safetensors",
        len(header).to_bytes(8, "little") + header + bytes([0x80, 0x3f, 0x00, 0xc0]))


def apex4_seeds():
    from tools.quantizer.checkpoint import write_checkpoint
    from tools.quantizer.gguf_loader import ModelConfig, expected_shapes
    from tools.quantizer.quantize import QuantOptions, quantize_model

    class CountingTokenizer:  # calibration needs only token ids
        def encode(self, text):
            return np.arange(len(text), dtype=np.int64) % 16

    calib = os.path.join(OUT, ".calib.txt")
    with open(calib, "w") as f:
        f.write("x" * 4096)
    try:
        # rtn: K=96 is padded to 128; quarot: the online Hadamard needs K a multiple of 128.
        for method, granularity, intermediate in (("rtn", "mixed", 96),
                                                  ("quarot", "per_channel", 128)):
            config = ModelConfig(vocab_size=16, hidden_size=64, intermediate_size=intermediate,
                                 num_layers=1, num_heads=1, num_kv_heads=1, head_dim=64,
                                 rope_theta=10000.0, rms_norm_eps=1e-5, context_length=64,
                                 bos_token_id=1, eos_token_id=2)
            rng = np.random.default_rng(0)
            weights = {name: (rng.standard_normal(shape) * 0.1 + (1.0 if len(shape) == 1 else 0))
                       .astype(np.float32) for name, shape in expected_shapes(config).items()}
            opts = QuantOptions(method=method, granularity=granularity, calib_path=calib,
                                calib_seqs=2, calib_len=16, weight_clip_search=False, act_clip=1.0)
            qm = quantize_model(config, weights, CountingTokenizer(), opts, log=lambda m: None)
            qm.source = {"kind": "gguf", "file": "micro.gguf", "sha256": "0" * 64,
                         "tokenizer": "gguf"}
            path = os.path.join(OUT, ".tmp.apex4")
            write_checkpoint(path, qm)
            with open(os.path.join(path, "apex4.json"), "rb") as f:
                meta = json.dumps(json.load(f), separators=(",", ":")).encode()
            with open(os.path.join(path, "model.safetensors"), "rb") as f:
                tensors = f.read()
            for name in os.listdir(path):
                os.remove(os.path.join(path, name))
            os.rmdir(path)
            out("apex4_checkpoint", f"micro_{method}_{granularity}", meta + APEX4_SEPARATOR + tensors)
            out("apex4_checkpoint", f"micro_{method}_{granularity}_metadata_only.json", meta)
    finally:
        os.remove(calib)


def tokenizer_seeds():
    lines = ["Hello, world!", "The quick brown fox jumps over 13 lazy dogs.",
             "<|im_start|>user\nWhat is 2+2?<|im_end|>\n", "naïve café — 東京 🙂",
             "    indented\tcode();\r\n", "I'm    you'll   DON'T 12345678"]
    for i, line in enumerate(lines):
        for flags in (0, 3):  # byte 0: option bits (see tokenizer_fuzzer.cc)
            out("tokenizer", f"line{i}_flags{flags}", bytes([flags]) + line.encode())


def main(model):
    gguf_seeds(model)
    safetensors_seeds()
    apex4_seeds()
    tokenizer_seeds()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
