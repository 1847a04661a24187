"""Issue 8, part 1: every malformed or out-of-limit request gets a clear status naming the field,
from the real server, and the server keeps serving everyone else.

Most requests go through grpcurl's JSON; bytes that JSON cannot carry (invalid UTF-8) go through
Debian's python3-grpcio as a hand-encoded request. The statuses seen are written as a Markdown
table among the test's outputs (tests/bad_inputs.md is a copy)."""

import json
import os
import subprocess
import textwrap
import unittest

from server_harness import SERVICE, SharedServerTestCase, completion, parse_grpc_error

VOCAB_SIZE = 49152  # SmolLM2's vocabulary
SYSTEM_PYTHON = "/usr/bin/python3"  # has python3-grpcio


def with_sampling(**sampling):
    return {"text": "Hello", "sampling": sampling}


# Raw protobuf bytes: GenerateRequest.text / TokenizeRequest.text (field 1, length-delimited)
# holding "a\xffb", which is not UTF-8.
INVALID_UTF8_TEXT = b"\x0a\x03a\xffb"

# (name, method, request: JSON for grpcurl or raw bytes, expected code as grpcurl spells it,
#  field named at the start of the message)
CASES = [
    ("no input", "Generate", {}, "InvalidArgument", "input"),
    ("empty text", "Generate", {"text": ""}, "InvalidArgument", "text"),
    ("oversized text", "Generate", {"text": "a" * 300_000}, "OutOfRange", "text"),
    ("prompt longer than the context", "Generate", {"text": "go " * 9000}, "OutOfRange",
     "prompt"),
    ("empty token ids", "Generate", {"token_ids": {}}, "InvalidArgument", "token_ids.ids"),
    ("token id past the vocabulary", "Generate", {"token_ids": {"ids": [1, VOCAB_SIZE]}},
     "InvalidArgument", "token_ids.ids[1]"),
    ("negative token id", "Generate", {"token_ids": {"ids": [-5]}}, "InvalidArgument",
     "token_ids.ids[0]"),
    ("empty chat", "Generate", {"chat": {}}, "InvalidArgument", "chat.messages"),
    ("unknown chat role", "Generate",
     {"chat": {"messages": [{"role": "robot", "content": "hi"}]}}, "InvalidArgument",
     "chat.messages[0].role"),
    ("negative max_tokens", "Generate", with_sampling(max_tokens=-1), "InvalidArgument",
     "sampling.max_tokens"),
    ("max_tokens over the limit", "Generate", with_sampling(max_tokens=2049), "OutOfRange",
     "sampling.max_tokens"),
    ("NaN temperature", "Generate", with_sampling(temperature="NaN"), "InvalidArgument",
     "sampling.temperature"),
    ("negative temperature", "Generate", with_sampling(temperature=-0.5), "InvalidArgument",
     "sampling.temperature"),
    ("infinite temperature", "Generate", with_sampling(temperature="Infinity"),
     "InvalidArgument", "sampling.temperature"),
    ("top_p above 1", "Generate", with_sampling(top_p=1.5), "InvalidArgument", "sampling.top_p"),
    ("negative top_p", "Generate", with_sampling(top_p=-0.1), "InvalidArgument",
     "sampling.top_p"),
    ("NaN top_p", "Generate", with_sampling(top_p="NaN"), "InvalidArgument", "sampling.top_p"),
    ("negative top_k", "Generate", with_sampling(top_k=-1), "InvalidArgument", "sampling.top_k"),
    ("too many stop strings", "Generate", with_sampling(stop=["x"] * 17), "OutOfRange",
     "sampling.stop"),
    ("overlong stop string", "Generate", with_sampling(stop=["y" * 300]), "OutOfRange",
     "sampling.stop[0]"),
    ("empty stop string", "Generate", with_sampling(stop=["ok", ""]), "InvalidArgument",
     "sampling.stop[1]"),
    ("overlong request_id", "Generate", {"text": "Hello", "request_id": "r" * 1000},
     "OutOfRange", "request_id"),
    ("tokenize without input", "Tokenize", {}, "InvalidArgument", "input"),
    ("tokenize oversized text", "Tokenize", {"text": "b" * 300_000}, "OutOfRange", "text"),
    ("message over --max_message_bytes", "Generate", {"text": "c" * (5 << 20)},
     "ResourceExhausted", None),
    ("invalid UTF-8 text", "Generate", INVALID_UTF8_TEXT, "InvalidArgument", "request"),
    ("tokenize invalid UTF-8 text", "Tokenize", INVALID_UTF8_TEXT, "InvalidArgument",
     "request"),
]

# Sends argv[3] (hex) as the request and prints the status, with grpcurl's spelling of the code.
RAW_CALL = textwrap.dedent("""
    import json, sys, grpc
    address, method, payload = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
    channel = grpc.insecure_channel(address)
    try:
        if method.endswith("Generate"):
            list(channel.unary_stream(method)(payload, timeout=60))
        else:
            channel.unary_unary(method)(payload, timeout=60)
        code, message = "OK", ""
    except grpc.RpcError as error:
        code, message = error.code().name, error.details()
    print(json.dumps({"code": "".join(w.title() for w in code.split("_")), "message": message}))
""")


class BadInputTest(SharedServerTestCase):

    SERVER_FLAGS = ("--max_tokens_limit=2048",)

    def call(self, method, request):
        """Sends `request` and returns (code, message)."""
        if isinstance(request, bytes):
            result = subprocess.run(
                [SYSTEM_PYTHON, "-c", RAW_CALL, self.server.address, f"/{SERVICE}/{method}",
                 request.hex()], capture_output=True, text=True, timeout=120, check=True)
            reply = json.loads(result.stdout)
            return reply["code"], reply["message"]
        # JSON goes on stdin: some requests are megabytes.
        result = subprocess.run(
            [self.server.grpcurl_path, "-plaintext", "-max-msg-sz", str(16 << 20), "-d", "@",
             self.server.address, f"{SERVICE}/{method}"],
            input=json.dumps(request), capture_output=True, text=True, timeout=120)
        if result.returncode == 0:
            return "OK", ""
        return parse_grpc_error(result.stderr)

    def test_each_bad_input_gets_its_status(self):
        table = []
        for name, method, request, expected_code, field in CASES:
            with self.subTest(name):
                code, message = self.call(method, request)
                table.append((name, method, code, message))
                self.assertEqual(code, expected_code, message)
                if field is not None:
                    self.assertTrue(message.startswith(field + ":"), message)
        self._record_table(table)
        # Bad input leaves the server serving others.
        text, ids, final = completion(self.server.generate(
            {"text": "The capital of France is", "sampling": {"max_tokens": 4}}))
        self.assertEqual(len(ids), 4)
        self.assertEqual(final["finish_reason"], "FINISH_REASON_LENGTH")
        self.assertTrue(text)
        # Each rejected call is counted once, unparsable ones included.
        for method in ("Generate", "Tokenize"):
            counted = self.server.metric(
                f'apex4_requests_total{{code="INVALID_ARGUMENT",method="{method}"}}')
            expected = sum(1 for c in CASES if c[1] == method and c[3] == "InvalidArgument")
            self.assertEqual(counted, expected, method)

    @staticmethod
    def _record_table(rows):
        """The statuses seen, as a Markdown table among the test's outputs."""
        directory = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR")
        if not directory:
            return
        with open(os.path.join(directory, "bad_inputs.md"), "w", encoding="utf-8") as out:
            out.write("# Bad inputs and the statuses the server gave them\n\n"
                      "Written by //tests:bad_input_test against the real server.\n\n"
                      "| input | RPC | status | message |\n|---|---|---|---|\n")
            for name, method, code, message in rows:
                out.write(f"| {name} | {method} | {code} | {message[:120]} |\n")


if __name__ == "__main__":
    unittest.main()
