"""Load test of the real server (issue 8, part 5): N concurrent streams, each sending Generate
requests back to back for a fixed time, on loopback. Reports throughput and latency percentiles
and fails on any error, any incomplete stream, or server RSS growth of 5% or more after warm-up.

  bazel run //tests:load_test -- --streams=64 --duration_s=120   # the issue's run (manual)
  bazel test //tests:load_smoke_test                             # a short run in CI

Robustness under load (errors, complete streams, memory). Throughput and latency per concurrency
level, on any server and model (the GPU included): tools/bench/load_benchmark.py.
"""

import argparse
import statistics
import sys
import threading
import time

from server_harness import GrpcError, Server, completion, percentile

PROMPTS = ["Write a haiku about the sea.", "Name three capital cities.",
           "Explain rain to a child.", "What is a prime number?"]


def rss_bytes(pid):
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class LoadRun:
    def __init__(self, server, max_tokens, stop_at):
        self.server, self.max_tokens, self.stop_at = server, max_tokens, stop_at
        self.lock = threading.Lock()
        self.latencies, self.first_token, self.errors, self.tokens = [], [], [], 0

    def client(self, index):
        while time.monotonic() < self.stop_at:
            request = {"chat": {"messages": [{"role": "user",
                                               "content": PROMPTS[index % len(PROMPTS)]}]},
                       "sampling": {"max_tokens": self.max_tokens, "temperature": 0.8,
                                    "seed": str(index)}}
            started = time.monotonic()
            try:
                _, ids, final = completion(self.server.generate(request, timeout=600))
                complete = ("finish_reason" in final
                            and final["usage"]["completion_tokens"] == len(ids))
            except (GrpcError, OSError) as error:
                with self.lock:
                    self.errors.append(repr(error))
                continue
            with self.lock:
                if not complete:
                    self.errors.append(f"incomplete stream: {final}")
                self.latencies.append(time.monotonic() - started)
                self.first_token.append(final["usage"].get("time_to_first_token_seconds", 0))
                self.tokens += len(ids)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--duration_s", type=float, default=120)
    parser.add_argument("--warmup_s", type=float, default=20)
    parser.add_argument("--max_tokens", type=int, default=16)
    args = parser.parse_args()

    server = Server("--max_batch_size=8", f"--max_queue_size={max(64, args.streams)}")
    try:
        server.wait_serving()
        started = time.monotonic()
        run = LoadRun(server, args.max_tokens, started + args.warmup_s + args.duration_s)
        clients = [threading.Thread(target=run.client, args=(i,)) for i in range(args.streams)]
        for thread in clients:
            thread.start()
        time.sleep(args.warmup_s)
        rss_after_warmup = rss_bytes(server.process.pid)
        peak_rss = rss_after_warmup
        while any(thread.is_alive() for thread in clients):
            peak_rss = max(peak_rss, rss_bytes(server.process.pid))
            time.sleep(1)
        elapsed = time.monotonic() - started
        growth = peak_rss / rss_after_warmup - 1
        print(f"streams={args.streams} duration={elapsed:.0f}s requests={len(run.latencies)} "
              f"errors={len(run.errors)} tokens/s={run.tokens / elapsed:.1f}")
        print(f"latency p50={percentile(run.latencies, 0.5):.2f}s "
              f"p99={percentile(run.latencies, 0.99):.2f}s "
              f"mean={statistics.fmean(run.latencies) if run.latencies else float('nan'):.2f}s; "
              f"time to first token p50={percentile(run.first_token, 0.5):.2f}s "
              f"p99={percentile(run.first_token, 0.99):.2f}s")
        print(f"rss after warm-up={rss_after_warmup / 2**20:.1f} MiB "
              f"peak={peak_rss / 2**20:.1f} MiB growth={growth:+.2%}")
        for error in run.errors[:10]:
            print("error:", error)
        failed = bool(run.errors) or not run.latencies or growth >= 0.05
    finally:
        exit_code = server.stop()
    if exit_code != 0:
        print(f"server exited with {exit_code} after SIGTERM")
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
