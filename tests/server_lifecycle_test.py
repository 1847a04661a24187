"""Issue 8, parts 2 and 3 on the real server: health is NOT_SERVING until the model is loaded,
cancellation and deadlines free the KV cache within a step, a full queue answers
RESOURCE_EXHAUSTED, SIGTERM drains in-flight streams and exits 0, and bad flags or a bad model
stop the binary with a message instead of a crash. Where it serves: --backend=auto takes the CPU
on a machine without a GPU, and --backend=cuda there exits 1 with the CUDA engine's reason."""

import glob
import os
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from server_harness import (SERVICE, GrpcError, Server, SharedServerTestCase, completion,
                            model_path, parse_json_stream, server_binary)

LONG = {"text": "Once upon a time", "sampling": {"max_tokens": 2000, "ignore_eos": True}}

# (flags, exit code, the server's last line) of every bad flag, written as a Markdown table
# among the test's outputs (tests/bad_inputs.md has a copy).
RECORDED_FLAGS = []


def tearDownModule():  # pylint: disable=invalid-name
    directory = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR")
    if not directory or not RECORDED_FLAGS:
        return
    with open(os.path.join(directory, "flag_cases.md"), "w", encoding="utf-8") as out:
        out.write("| flags | exit code | message |\n|---|---|---|\n")
        for flags, code, message in RECORDED_FLAGS:
            out.write(f"| `{flags}` | {code} | {message[:160]} |\n")


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class OverloadAndCancellationTest(SharedServerTestCase):

    SERVER_FLAGS = ("--max_batch_size=1", "--max_queue_size=1")

    def kv_blocks(self):
        return self.server.metric("apex4_kv_cache_blocks_in_use")

    def test_client_cancellation_frees_the_kv_cache(self):
        idle_blocks = self.kv_blocks()
        client = self.server.start_grpcurl(f"{SERVICE}/Generate", LONG)
        try:
            wait_for(lambda: self.kv_blocks() > idle_blocks, 60, "the sequence to hold KV blocks")
            wait_for(lambda: self.server.metric("apex4_generated_tokens_total") or 0, 60,
                     "tokens to flow")
        finally:
            client.kill()  # the client goes away mid-stream
            client.communicate()
        started = time.monotonic()
        wait_for(lambda: self.kv_blocks() == idle_blocks, 5, "the KV cache to be freed")
        print(f"KV cache freed {time.monotonic() - started:.3f} s after the client left")
        self.assertEqual(self.server.metric("apex4_batch_size"), 0)
        wait_for(lambda: self.server.metric(
            'apex4_requests_total{code="CANCELLED",method="Generate"}'), 5,
            "the cancelled request to be counted")

    def test_deadline_exceeded_stops_generation(self):
        with self.assertRaises(GrpcError) as raised:
            self.server.generate(LONG, max_time=1.5)
        self.assertEqual(raised.exception.code, "DeadlineExceeded")
        wait_for(lambda: self.server.metric("apex4_batch_size") == 0, 5, "the batch to empty")
        wait_for(lambda: self.server.metric(
            'apex4_requests_total{code="DEADLINE_EXCEEDED",method="Generate"}'), 5,
            "the expired request to be counted")

    def test_full_queue_is_resource_exhausted(self):
        running = self.server.start_grpcurl(f"{SERVICE}/Generate", LONG)
        queued = None
        try:
            wait_for(lambda: self.server.metric("apex4_batch_size") == 1, 60, "a running stream")
            queued = self.server.start_grpcurl(f"{SERVICE}/Generate", LONG)
            wait_for(lambda: self.server.metric("apex4_queue_depth") == 1, 60, "a queued stream")
            with self.assertRaises(GrpcError) as raised:
                self.server.generate({"text": "Hi", "sampling": {"max_tokens": 1}}, timeout=30)
            self.assertEqual(raised.exception.code, "ResourceExhausted")
            self.assertIn("queue", raised.exception.message)
        finally:
            for client in (running, queued):
                if client is not None:
                    client.kill()
                    client.communicate()
        wait_for(lambda: self.server.metric("apex4_queue_depth") == 0
                 and self.server.metric("apex4_batch_size") == 0, 10, "the server to go idle")
        # Still serving afterwards.
        _, ids, _ = completion(self.server.generate({"text": "Hi", "sampling": {"max_tokens": 2}}))
        self.assertEqual(len(ids), 2)


class StartupTest(unittest.TestCase):

    def test_not_serving_while_the_model_loads(self):
        with tempfile.TemporaryDirectory() as workdir:
            # Reading a FIFO blocks until someone writes: the load waits for the test.
            model = os.path.join(workdir, "model.gguf")
            os.mkfifo(model)
            server = Server(model=model)
            wait_for(lambda: server.health() == "NOT_SERVING", 60, "health to answer")
            with self.assertRaises(GrpcError) as raised:
                server.generate({"text": "Hi", "sampling": {"max_tokens": 1}}, timeout=30)
            self.assertEqual(raised.exception.code, "Unavailable")
            with open(model, "wb"):
                pass  # an empty "model": the load goes on and must refuse it
            self.assertEqual(server.process.wait(timeout=60), 1)
            self.assertIn(model, server.log())
            server.stop()


class ShutdownTest(unittest.TestCase):

    def test_sigterm_drains_in_flight_streams_and_exits_zero(self):
        server = Server("--shutdown_grace_seconds=60")
        server.wait_serving()
        request = {"text": "Once upon a time", "sampling": {"max_tokens": 64, "ignore_eos": True}}
        client = server.start_grpcurl(f"{SERVICE}/Generate", request)
        wait_for(lambda: server.metric("apex4_generated_tokens_total"), 60, "the first tokens")
        server.process.send_signal(signal.SIGTERM)
        # New streams are refused while the old one finishes.
        with self.assertRaises(GrpcError):
            server.generate({"text": "Hi", "sampling": {"max_tokens": 1}}, timeout=30)
        self.assertNotEqual(server.health(), "SERVING")
        stdout, stderr = client.communicate(timeout=120)
        self.assertEqual(client.returncode, 0, stderr)
        _, ids, final = completion(parse_json_stream(stdout))
        self.assertEqual(len(ids), 64)
        self.assertEqual(final["finish_reason"], "FINISH_REASON_LENGTH")
        self.assertEqual(server.process.wait(timeout=60), 0)
        server.stop()

    def test_grace_period_bounds_the_drain(self):
        server = Server("--shutdown_grace_seconds=1")
        server.wait_serving()
        client = server.start_grpcurl(f"{SERVICE}/Generate", LONG)
        wait_for(lambda: server.metric("apex4_generated_tokens_total"), 60, "the first tokens")
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        self.assertEqual(server.process.wait(timeout=30), 0)
        self.assertLess(time.monotonic() - started, 10)
        client.communicate(timeout=30)
        self.assertNotEqual(client.returncode, 0, "a 2000-token stream cannot finish in 1 s")
        server.stop()


def has_gpu():
    """An NVIDIA GPU with its driver: the device nodes the driver creates."""
    return bool(glob.glob("/dev/nvidia[0-9]*"))


@unittest.skipIf(has_gpu(), "these check the behaviour on a machine without a GPU")
class BackendWithoutAGpuTest(unittest.TestCase):

    def test_auto_serves_on_the_cpu_and_says_why(self):
        server = Server("--backend=auto", "--gpu_weights=fp8")
        self.addCleanup(server.stop)
        server.wait_serving()
        info = server.grpcurl(f"{SERVICE}/GetModelInfo", {})[0]
        self.assertEqual(info["backend"], "cpu")
        log = server.log()
        self.assertRegex(log, r"backend cpu: --backend=auto found no GPU to use \(no usable CUDA "
                              r"device: cudaGetDeviceCount: ")
        self.assertIn("--gpu_weights ignored on the CPU", log)
        _, ids, _ = completion(server.generate({"text": "Hi", "sampling": {"max_tokens": 2}}))
        self.assertEqual(len(ids), 2)
        self.assertEqual(server.stop(), 0)

    def test_cuda_exits_1_with_the_engine_message(self):
        result = subprocess.run(
            [server_binary(), f"--model={model_path()}", "--backend=cuda", "--grpc_port=0",
             "--metrics_port=0"], capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("backend cuda: --backend=cuda", result.stderr)
        # LoadCudaEngine's refusal, as the engine words it, with the way out.
        self.assertRegex(result.stderr, r"error: FAILED_PRECONDITION: no CUDA device is usable .*"
                                        r"run with --backend=cpu")


class BadFlagsTest(unittest.TestCase):

    def run_binary(self, *flags):
        return subprocess.run([server_binary(), *flags], capture_output=True, text=True,
                              timeout=120)

    def test_each_bad_flag_exits_1_naming_it(self):
        cases = [
            (["--max_batch_size=0"], "--max_batch_size"),
            (["--grpc_port=70000"], "--grpc_port"),
            (["--grpc_port=abc"], "grpc_port"),
            (["--default_max_tokens=5000"], "--default_max_tokens"),
            (["--backend=cpu", "--kv_cache_mb=0"], "--kv_cache_mb"),
            (["--backend=cpu", "--kv_cache_mb=-2"], "--kv_cache_mb"),
            (["--backend=tpu"], "--backend"),
            (["--gpu_weights=int3"], "--gpu_weights"),
            (["--backend=cpu", "--gpu_weights=bf16"], "--gpu_weights"),
            (["--backend=cpu", "--tokenizer=tok.gguf"], "--tokenizer"),
            (["--cuda_device=-1"], "--cuda_device"),
            (["--prefill_chunk_tokens=0"], "--prefill_chunk_tokens"),
            (["--max_batch_size=8", "--max_step_tokens=7"], "--max_step_tokens"),
            (["--max_message_bytes=10"], "--max_message_bytes"),
            (["--threads=-1"], "--threads"),
            (["--kv_cache_bits=8"], "--kv_cache_bits"),
            (["--no_such_flag=1"], "no_such_flag"),
            (["--grpc_port=0", "--metrics_port=0", "--model=/nonexistent/model.gguf"],
             "/nonexistent/model.gguf"),
        ]
        for flags, named in cases:
            with self.subTest(flags=flags):
                result = self.run_binary(f"--model={model_path()}", *flags)
                lines = [line for line in result.stderr.splitlines() if line.strip()]
                RECORDED_FLAGS.append((" ".join(flags), result.returncode,
                                       lines[-1] if lines else ""))
                # 1, not merely nonzero: not a crash on a signal, nor (under
                # tools/run_sanitizers.sh) an ASan/UBSan report, which exits 66.
                self.assertEqual(result.returncode, 1, result.stderr)
                self.assertIn(named, result.stderr)

    def test_busy_port_is_reported(self):
        with socket.socket() as busy:
            busy.bind(("0.0.0.0", 0))
            busy.listen()
            port = busy.getsockname()[1]
            result = self.run_binary(f"--model={model_path()}", "--grpc_port=0",
                                     f"--metrics_port={port}")
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn(f"port {port}", result.stderr)


if __name__ == "__main__":
    unittest.main()
