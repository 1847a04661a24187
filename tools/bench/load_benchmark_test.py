"""CPU smoke runs of tools/bench/load_benchmark.py against the real server (default model), so
that the GPU benchmark cannot rot: both ways of reaching a server, both ways of ending a level,
and the JSON and markdown it writes."""

import json
import os
import tempfile
import unittest

import load_benchmark
from server_harness import Server


class LoadBenchmarkTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        self.json = os.path.join(self.dir, "bench.json")
        self.markdown = os.path.join(self.dir, "bench.md")

    def run_benchmark(self, *args):
        code = load_benchmark.main([*args, f"--json={self.json}", f"--markdown={self.markdown}",
                                    "--fail_on_error"])
        self.assertEqual(code, 0)
        with open(self.json, encoding="utf-8") as f:
            report = json.load(f)
        with open(self.markdown, encoding="utf-8") as f:
            table = f.read()
        return report, table

    def check_level(self, level, concurrency):
        self.assertEqual(level["concurrency"], concurrency)
        self.assertEqual(level["errors"], 0, level["error_samples"])
        self.assertGreater(level["requests"], 0)
        self.assertGreater(level["output_tokens_per_s"], 0)
        for key in ("ttft_ms", "tpot_ms", "latency_ms", "server_ttft_ms", "server_tpot_ms"):
            self.assertGreater(level[key]["p50"], 0, key)
            self.assertGreaterEqual(level[key]["p99"], level[key]["p50"], key)
        # The server's view of the first token never exceeds the client's, which also waited for
        # grpcurl to start and the bytes to arrive.
        self.assertLessEqual(level["server_ttft_ms"]["p50"], level["ttft_ms"]["p50"])

    def test_starts_the_server_and_counts_requests(self):
        report, table = self.run_benchmark(
            "--server_flag=--backend=cpu", "--concurrency=1,2", "--prompt_tokens=8",
            "--max_tokens=4", "--requests=4", "--duration_s=0")
        self.assertEqual(report["server"]["backend"], "cpu")
        self.assertEqual(report["server_exit_code"], 0)
        self.assertEqual([level["concurrency"] for level in report["levels"]], [1, 2])
        for level, concurrency in zip(report["levels"], (1, 2)):
            self.check_level(level, concurrency)
            self.assertEqual(level["requests"], 4)
            self.assertEqual(level["output_tokens"], 16)  # end-of-sequence ignored: all 4 each
        rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
        self.assertEqual(len(rows), 3, table)  # header and one row per level
        self.assertTrue(rows[1].startswith("| 1 | 4 | 0 |"), rows[1])
        self.assertTrue(rows[2].startswith("| 2 | 4 | 0 |"), rows[2])

    def test_running_server_for_a_duration(self):
        server = Server("--backend=cpu", "--max_batch_size=2")
        self.addCleanup(server.stop)
        server.wait_serving()
        # Sampled requests (temperature, top-k, top-p, a seed per request).
        report, _ = self.run_benchmark(f"--address={server.address}", "--concurrency=2",
                                       "--prompt_tokens=4", "--max_tokens=2", "--duration_s=2",
                                       "--warmup_rounds=0", "--temperature=0.8", "--top_k=40",
                                       "--top_p=0.9")
        self.assertEqual(report["config"]["temperature"], 0.8)
        self.assertIsNone(report["server_exit_code"])
        level = report["levels"][0]
        self.check_level(level, 2)
        self.assertAlmostEqual(level["window_s"], 2.0, delta=0.5)
        self.assertEqual(level["output_tokens"], 2 * level["requests"])
        self.assertEqual(server.stop(), 0)

    def test_bad_arguments_are_refused(self):
        for args in (["--concurrency=0"], ["--concurrency=a,b"], ["--max_tokens=0"],
                     ["--duration_s=0", "--requests=0"], ["--address=x:1", "--server_cmd=y"],
                     ["--temperature=-1"], ["--top_p=1.5"], ["--top_k=-1"]):
            with self.subTest(args=args), self.assertRaises(SystemExit):
                load_benchmark.parse_args(args)


if __name__ == "__main__":
    unittest.main()
