"""Command line: `python3 -m tools.quantizer {quantize,eval} ...` (run from the repository root).

quantize: GGUF -> W4A4 (rtn | atom | quarot, optional GPTQ) -> optional checkpoint, optional
          evaluation of the fake-quantized model.
eval:     evaluates the FP32 GGUF or a checkpoint (optionally another stored granularity or a
          4-bit KV cache).
Evaluation prints one JSON object (and writes it with --json)."""
import argparse
import json
import os
import sys
import time

from .gguf_loader import QuantizerError, file_sha256, load_gguf
from .int4 import INT8_MAX
from .model import ActQuant, KvCacheQuant, LlamaModel

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA_DIR = os.path.join(os.path.dirname(_REPO), "shared", "data")


def _add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ppl-text", default=os.path.join(DATA_DIR, "moby_dick.txt"))
    p.add_argument("--ppl-windows", type=int, default=16, help="windows of --ctx tokens (0: skip)")
    p.add_argument("--ctx", type=int, default=2048)
    p.add_argument("--hellaswag", default=os.path.join(DATA_DIR, "hellaswag_val_dev1000.txt"))
    p.add_argument("--hellaswag-tasks", type=int, default=300, help="first N tasks (0: skip)")
    p.add_argument("--json", help="also write the result object to this file")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 -m tools.quantizer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quantize", help="quantize a GGUF to W4A4")
    q.add_argument("--gguf", required=True)
    q.add_argument("--method", choices=("rtn", "atom", "quarot"), default="quarot")
    q.add_argument("--gptq", action="store_true", help="GPTQ instead of round-to-nearest weights")
    q.add_argument("--granularity", choices=("per_channel", "g128", "mixed"), default="g128")
    q.add_argument("--mixed-g128-fraction", type=float, default=0.5)
    q.add_argument("--act-clip", type=float, help="fixed activation clip ratio (default: search)")
    q.add_argument("--no-weight-clip-search", action="store_true",
                   help="weight scale = absmax / 7 (plain RTN)")
    q.add_argument("--kv-bits", type=int, choices=(4, 16), default=16)
    q.add_argument("--calib", default=os.path.join(DATA_DIR, "wikitext2_valid_tokens.txt"),
                   help="calibration text, or a .ids file of whitespace-separated token ids "
                        "(no tokenizer needed: see calibration-ids)")
    q.add_argument("--calib-seqs", type=int, default=16)
    q.add_argument("--calib-len", type=int, default=512)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--out", help="checkpoint directory to write (e.g. models/x.apex4)")
    q.add_argument("--no-eval", action="store_true", help="only quantize (and write)")
    _add_eval_args(q)
    e = sub.add_parser("eval", help="evaluate the FP32 GGUF or an apex4 checkpoint")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--gguf", help="FP32 reference (and the tokenizer source)")
    src.add_argument("--checkpoint")
    e.add_argument("--tokenizer-gguf", help="GGUF holding the tokenizer (default: the "
                   "checkpoint's source file under models/)")
    e.add_argument("--granularity", choices=("per_channel", "g128", "mixed"),
                   help="evaluate this stored variant for every layer instead of the configured "
                   "one; mixed: re-choose per layer from the stored sensitivity")
    e.add_argument("--mixed-g128-fraction", type=float, default=0.5)
    e.add_argument("--kv-bits", type=int, choices=(4, 16), help="override the KV cache")
    e.add_argument("--act-bits", type=int, choices=(4, 8, 16), default=4,
                   help="activations of the quantized layers (8/16: to locate the error)")
    _add_eval_args(e)
    i = sub.add_parser("calibration-ids", help="tokenize calibration text into a .ids file")
    i.add_argument("--gguf", required=True, help="the GGUF whose tokenizer the model uses")
    i.add_argument("--calib", default=os.path.join(DATA_DIR, "wikitext2_valid_tokens.txt"))
    i.add_argument("--tokens", type=int, default=8 * 16 * 512,
                   help="at least this many tokens (8 · calib-seqs · calib-len is what quantize reads)")
    i.add_argument("--out", required=True, help="the .ids file to write")
    return parser


def _calibration_ids(args) -> None:
    from .calibration import TOKEN_IDS_SUFFIX, calibration_tokens
    from .tokenizer import GgufTokenizer

    if not args.out.endswith(TOKEN_IDS_SUFFIX):
        raise QuantizerError(f"--out must end with {TOKEN_IDS_SUFFIX}")
    tokens = calibration_tokens(GgufTokenizer(args.gguf), args.calib, args.tokens)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(" ".join(str(t) for t in tokens) + "\n")
    print(f"[calibration-ids] {len(tokens)} tokens to {args.out}", file=sys.stderr)


def _evaluate(model: LlamaModel, tokenizer, args, description: dict) -> dict:
    from .evaluate import hellaswag, perplexity, read_hellaswag
    from .tokenizer import encode_prefix

    result = dict(description)
    if args.ppl_windows > 0:
        with open(args.ppl_text, encoding="utf-8") as f:
            tokens = encode_prefix(tokenizer, f.read(), args.ctx * args.ppl_windows)
        result["perplexity"] = perplexity(model, tokens, args.ctx, args.ppl_windows)
        result["perplexity"]["text"] = os.path.basename(args.ppl_text)
    if args.hellaswag_tasks > 0:
        tasks = read_hellaswag(args.hellaswag, args.hellaswag_tasks)
        result["hellaswag"] = hellaswag(model, tokenizer, tasks)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return result


def _quantize(args) -> None:
    from .checkpoint import write_checkpoint
    from .quantize import QuantOptions, quantize_model
    from .calibration import TOKEN_IDS_SUFFIX
    from .tokenizer import GgufTokenizer

    opts = QuantOptions(method=args.method, gptq=args.gptq, granularity=args.granularity,
                        mixed_g128_fraction=args.mixed_g128_fraction, act_clip=args.act_clip,
                        weight_clip_search=not args.no_weight_clip_search, kv_bits=args.kv_bits,
                        calib_path=args.calib, calib_seqs=args.calib_seqs,
                        calib_len=args.calib_len, seed=args.seed)
    opts.validate()
    start = time.time()
    config, weights = load_gguf(args.gguf)
    # Pre-tokenized calibration without evaluation needs no tokenizer (nor llama-cpp-python).
    needs_tokenizer = not args.calib.endswith(TOKEN_IDS_SUFFIX) or not args.no_eval
    tokenizer = GgufTokenizer(args.gguf) if needs_tokenizer else None
    qm = quantize_model(config, weights, tokenizer, opts,
                        log=lambda m: print(m, file=sys.stderr))
    qm.source = {"kind": "gguf", "file": os.path.basename(args.gguf),
                 "sha256": file_sha256(args.gguf), "tokenizer": "gguf"}
    print(f"[quantize] {time.time() - start:.0f} s", file=sys.stderr)
    if args.out:
        write_checkpoint(args.out, qm)
        print(f"[quantize] wrote {args.out}", file=sys.stderr)
    if not args.no_eval:
        _evaluate(qm.build_model(), tokenizer, args,
                  {"model": os.path.basename(args.gguf), "quantization": qm.meta,
                   "granularity": args.granularity, "kv_bits": args.kv_bits})


def _set_act_bits(model: LlamaModel, bits: int) -> None:
    """A8 keeps each layer's granularity and clip ratio with 127 levels; A16 drops the
    activation quantizer (weights stay INT4)."""
    for block in model.blocks:
        for linear in block.linears.values():
            q = linear.act_quant
            if bits == 16:
                linear.act_quant = None
            elif bits == 8:
                linear.act_quant = ActQuant(q.group_size, q.clip_ratio, INT8_MAX)


def _eval(args) -> None:
    from .checkpoint import read_checkpoint
    from .quantize import set_granularity
    from .tokenizer import GgufTokenizer

    if args.gguf:
        config, weights = load_gguf(args.gguf)
        model = LlamaModel.from_weights(config, weights)
        tokenizer_path, description = args.gguf, {"model": os.path.basename(args.gguf),
                                                  "quantization": "fp32"}
        if args.granularity:
            raise QuantizerError("--granularity applies to checkpoints only")
    else:
        qm = read_checkpoint(args.checkpoint)
        if args.granularity:
            set_granularity(qm.layers, args.granularity, args.mixed_g128_fraction)
        model = qm.build_model()
        _set_act_bits(model, args.act_bits)
        tokenizer_path = args.tokenizer_gguf or os.path.join(_REPO, "models", qm.source["file"])
        description = {"checkpoint": args.checkpoint, "quantization": qm.meta,
                       "granularity": args.granularity or qm.meta["default_granularity"]}
    if args.kv_bits:
        rotated = bool(args.checkpoint) and qm.meta.get("rotation") is not None
        model.kv_quant = KvCacheQuant(key_hadamard=rotated) if args.kv_bits == 4 else None
    description["kv_bits"] = 4 if model.kv_quant else 16
    if args.checkpoint:
        description["act_bits"] = args.act_bits
    _evaluate(model, GgufTokenizer(tokenizer_path), args, description)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        {"quantize": _quantize, "eval": _eval, "calibration-ids": _calibration_ids}[args.command](args)
    except QuantizerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
