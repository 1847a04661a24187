#!/usr/bin/env python3
"""The outside peer of the CUDA engine's decode benchmark: Hugging Face transformers on PyTorch,
BF16, on the same GPU and the same synthetic shape (random weights, never zeros; the vocabulary
of apex4's synthetic models, 49152, so the LM head costs the same).

For each batch size: B random 512-token prompts, greedy generation of --new tokens with
min_new_tokens = max_new_tokens (no early stop). Prefill time is a separate one-token generate;
decode tokens/s = B · (new − 1) / (time of the full generate − prefill time). Two caches:
"dynamic" (eager PyTorch) and "static" (transformers compiles the decode step with torch.compile
when the static cache is used). Needs torch and transformers (the GPU machine's python3 has both).

  python3 tools/bench/hf_peer_benchmark.py --batches=1,16,64 --json=OUT.json
"""
import argparse
import json
import sys
import time

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

SHAPES = {
    "llama-2-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=32,
                       max_position_embeddings=4096, rope_theta=10000.0),
}


def timed_generate(model, prompts, new_tokens, cache):
    torch.cuda.synchronize()
    start = time.perf_counter()
    model.generate(prompts, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                   do_sample=False, cache_implementation=cache,
                   pad_token_id=0, eos_token_id=None)
    torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="llama-2-7b", choices=sorted(SHAPES))
    parser.add_argument("--batches", default="1,16,64")
    parser.add_argument("--caches", default="dynamic,static")
    parser.add_argument("--prompt", type=int, default=512)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--json")
    args = parser.parse_args()

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=args.vocab, rms_norm_eps=1e-5, **SHAPES[args.shape])
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    result = {"shape": args.shape, "device": torch.cuda.get_device_name(),
              "torch": torch.__version__, "transformers": transformers.__version__,
              "prompt_tokens": args.prompt, "new_tokens": args.new, "runs": []}
    print(f"{args.shape} (synthetic bf16) on {result['device']}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}", flush=True)
    with torch.inference_mode():
        for cache in args.caches.split(","):
            for batch in (int(b) for b in args.batches.split(",")):
                prompts = torch.randint(3, args.vocab, (batch, args.prompt), device="cuda")
                try:
                    # Warm-up at the timed length: the static cache's size (and so its compiled
                    # decode step) depends on it.
                    timed_generate(model, prompts, args.new, cache)
                    prefill = timed_generate(model, prompts, 1, cache)
                    total = timed_generate(model, prompts, args.new, cache)
                except Exception as error:  # report what failed and go on with the rest
                    print(f"{cache:8s} batch {batch:3d}: failed: {error}", flush=True)
                    result["runs"].append({"cache": cache, "batch": batch, "error": str(error)})
                    continue
                decode_s = max(total - prefill, 1e-9)
                tokens_per_s = batch * (args.new - 1) / decode_s
                ms_per_step = decode_s / (args.new - 1) * 1e3
                print(f"{cache:8s} batch {batch:3d}: decode {tokens_per_s:9.1f} tok/s "
                      f"({ms_per_step:6.2f} ms/step), prefill {batch * args.prompt / prefill:9.0f} "
                      f"tok/s", flush=True)
                result["runs"].append({"cache": cache, "batch": batch,
                                       "decode_tokens_per_s": tokens_per_s,
                                       "decode_ms_per_step": ms_per_step,
                                       "prefill_tokens_per_s": batch * args.prompt / prefill})
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
