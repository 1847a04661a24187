#!/usr/bin/env python3
"""Exports a llama.cpp GGUF model in full precision, for tests that need the exact FP32 model.

  gguf_export.py f32-gguf MODEL.gguf OUT.gguf
      The same GGUF with every tensor dequantized (by gguf-py) to F32, so that llama.cpp runs
      the model without quantized weights or activations.
  gguf_export.py hf MODEL.gguf OUT_DIR [--dtype float32|float16] [--shards N]
      A Hugging Face LLaMA directory: config.json and model.safetensors, or N shards and
      model.safetensors.index.json (written by the safetensors package), with Q/K rows returned from llama.cpp's RoPE order to Hugging
      Face's, as transformers does when it reads a GGUF.
  gguf_export.py tokenizer MODEL.gguf OUT.gguf
      The model's metadata (tokenizer, chat template, hyperparameters) without its tensors: the
      --tokenizer of a synthetic model on the CUDA engine, small enough to carry to a GPU
      machine (about 2 MB for SmolLM2 instead of 98 MB).
"""
import argparse
import json
import os

import gguf
import numpy as np
from gguf.quants import dequantize


def dequantized_tensors(reader):
    """(name, float32 array in row-major [rows, cols] order) for every tensor."""
    for tensor in reader.tensors:
        values = dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        shape = [int(d) for d in reversed(tensor.shape)]  # ggml lists the contiguous dim first
        yield tensor.name, values.reshape(shape)


def copy_metadata(reader, out_path, file_type=None):
    """A writer for `out_path` holding every key of `reader` (general.file_type replaced by
    `file_type` when given)."""
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(out_path, arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        if name == "general.file_type" and file_type is not None:
            writer.add_file_type(file_type)
            continue
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), value_type, sub_type=sub_type)
    return writer


def write_f32_gguf(reader, out_path):
    writer = copy_metadata(reader, out_path, gguf.LlamaFileType.ALL_F32)
    for name, values in dequantized_tensors(reader):
        writer.add_tensor(name, values)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_tokenizer_gguf(reader, out_path):
    writer = copy_metadata(reader, out_path)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


HF_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}


def hf_name(gguf_name):
    if gguf_name.startswith("blk."):
        _, layer, rest = gguf_name.split(".", 2)
        return f"model.layers.{layer}.{HF_NAMES[rest]}"
    return HF_NAMES[gguf_name]


def to_rotate_half_order(weights, num_heads):
    """Undoes convert_hf_to_gguf's permute: row 2i + s of a head goes back to s * d/2 + i."""
    rows, cols = weights.shape
    head_dim = rows // num_heads
    return (weights.reshape(num_heads, head_dim // 2, 2, cols)
            .swapaxes(1, 2).reshape(rows, cols))


def write_hf_directory(reader, out_dir, dtype, shards):
    from safetensors.numpy import save_file

    def meta(key):
        return reader.fields[key].contents()

    heads = meta("llama.attention.head_count")
    kv_heads = meta("llama.attention.head_count_kv")
    names = {t.name for t in reader.tensors}
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "hidden_size": meta("llama.embedding_length"),
        "intermediate_size": meta("llama.feed_forward_length"),
        "max_position_embeddings": meta("llama.context_length"),
        "num_attention_heads": heads,
        "num_hidden_layers": meta("llama.block_count"),
        "num_key_value_heads": kv_heads,
        "rms_norm_eps": meta("llama.attention.layer_norm_rms_epsilon"),
        "rope_theta": meta("llama.rope.freq_base"),
        "tie_word_embeddings": "output.weight" not in names,
        "vocab_size": len(meta("tokenizer.ggml.tokens")),
        "bos_token_id": meta("tokenizer.ggml.bos_token_id"),
        "eos_token_id": meta("tokenizer.ggml.eos_token_id"),
        "torch_dtype": dtype,
    }
    tensors = {}
    for name, values in dequantized_tensors(reader):
        if name.endswith("attn_q.weight"):
            values = to_rotate_half_order(values, heads)
        elif name.endswith("attn_k.weight"):
            values = to_rotate_half_order(values, kv_heads)
        tensors[hf_name(name)] = np.ascontiguousarray(values)
    np_dtype = {"float32": np.float32, "float16": np.float16}[dtype]
    tensors = {k: v.astype(np_dtype) for k, v in tensors.items()}
    os.makedirs(out_dir, exist_ok=True)
    if shards == 1:
        save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    else:
        # Round-robin over the shards, with the index transformers writes beside them.
        names = sorted(tensors)
        weight_map = {}
        for shard in range(shards):
            file_name = f"model-{shard + 1:05d}-of-{shards:05d}.safetensors"
            part = {n: tensors[n] for n in names[shard::shards]}
            save_file(part, os.path.join(out_dir, file_name), metadata={"format": "pt"})
            weight_map.update({n: file_name for n in part})
        with open(os.path.join(out_dir, "model.safetensors.index.json"), "w",
                  encoding="utf-8") as f:
            json.dump({"metadata": {}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    f32 = sub.add_parser("f32-gguf")
    f32.add_argument("model")
    f32.add_argument("out")
    hf = sub.add_parser("hf")
    hf.add_argument("model")
    hf.add_argument("out_dir")
    hf.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    hf.add_argument("--shards", type=int, default=1, help="split into this many files")
    tokenizer = sub.add_parser("tokenizer")
    tokenizer.add_argument("model")
    tokenizer.add_argument("out")
    args = parser.parse_args()
    reader = gguf.GGUFReader(args.model)
    if args.command == "f32-gguf":
        write_f32_gguf(reader, args.out)
    elif args.command == "tokenizer":
        write_tokenizer_gguf(reader, args.out)
    else:
        write_hf_directory(reader, args.out_dir, args.dtype, args.shards)


if __name__ == "__main__":
    main()
