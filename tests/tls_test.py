"""Issue 8: TLS on the gRPC port of the real server. Certificates are made by the real openssl
CLI in a temporary directory (a CA, a server certificate for localhost/127.0.0.1, a client
certificate, and an impostor CA with the same name but another key); calls go through the real
grpcurl. Checks what a TLS client, a plaintext client, a client without or with a forged
certificate get, and that bad --tls_* flags stop the binary before it serves."""

import os
import shutil
import subprocess
import tempfile
import unittest

from server_harness import SERVICE, GrpcError, Server, completion, model_path, server_binary

CA_SUBJECT = "/CN=apex4 test CA"

# (input, outcome, message) of every refused connection and bad flag, written as a Markdown table
# among the test's outputs (tests/bad_inputs.md has a copy).
RECORDED = []


def tearDownModule():  # pylint: disable=invalid-name
    directory = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR")
    if not directory:
        return
    with open(os.path.join(directory, "tls_cases.md"), "w", encoding="utf-8") as out:
        out.write("| input | outcome | message |\n|---|---|---|\n")
        for name, outcome, message in RECORDED:
            out.write(f"| {name} | {outcome} | {message[:160]} |\n")


def openssl(*args):
    binary = shutil.which("openssl")
    if binary is None:
        raise FileNotFoundError("openssl not found: tools/setup.sh installs it")
    subprocess.run([binary, *args], check=True, capture_output=True, timeout=60)


class Pki:
    """Keys and certificates (EC P-256, PEM) in `directory`."""

    def __init__(self, directory):
        self.directory = directory
        self.serial = 1

    def path(self, name):
        return os.path.join(self.directory, name)

    def ca(self, name, subject=CA_SUBJECT):
        """A self-signed CA: (certificate, key)."""
        cert, key = self.path(f"{name}.pem"), self.path(f"{name}.key")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", subject,
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        return cert, key

    def leaf(self, name, subject, ca, extensions):
        """A certificate signed by `ca` (a (certificate, key) pair): (certificate, key)."""
        cert, key = self.path(f"{name}.pem"), self.path(f"{name}.key")
        request, extfile = self.path(f"{name}.csr"), self.path(f"{name}.ext")
        with open(extfile, "w", encoding="ascii") as out:
            out.write("\n".join(extensions) + "\n")
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", key, "-out", request, "-subj", subject)
        openssl("x509", "-req", "-in", request, "-CA", ca[0], "-CAkey", ca[1],
                "-set_serial", str(self.serial), "-days", "2", "-extfile", extfile,
                "-out", cert)
        self.serial += 1
        return cert, key

    def server(self, name, ca):
        return self.leaf(name, "/CN=localhost", ca,
                         ["subjectAltName=DNS:localhost,IP:127.0.0.1",
                          "extendedKeyUsage=serverAuth"])

    def client(self, name, ca):
        return self.leaf(name, f"/CN={name}", ca, ["extendedKeyUsage=clientAuth"])


class TlsTestCase(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="apex4_tls_")
        pki = Pki(cls.workdir)
        cls.pki = pki
        cls.ca = pki.ca("ca")
        cls.server_cert = pki.server("server", cls.ca)
        cls.client_cert = pki.client("client", cls.ca)
        # Same subject as the real CA (so that clients offer its certificates to the server),
        # another key: nothing it signs may be accepted.
        cls.impostor_ca = pki.ca("impostor_ca")
        cls.impostor_server_cert = pki.server("impostor_server", cls.impostor_ca)
        cls.impostor_client_cert = pki.client("impostor_client", cls.impostor_ca)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.workdir, ignore_errors=True)

    def tls_flags(self, cert=None, client_ca=None):
        cert_file, key_file = cert or self.server_cert
        flags = [f"--tls_cert_file={cert_file}", f"--tls_key_file={key_file}"]
        if client_ca is not None:
            flags.append(f"--tls_client_ca_file={client_ca}")
        return flags

    def start(self, *flags, transport):
        server = Server("--max_batch_size=2", *flags, transport=transport)
        self.addCleanup(self.assert_clean_exit, server)
        server.wait_serving()
        return server

    def assert_clean_exit(self, server):
        self.assertEqual(server.stop(), 0, "server must exit 0 on SIGTERM")

    def assert_generates_text(self, server, transport=None, address=None):
        request = {"text": "The capital of France is", "sampling": {"max_tokens": 4}}
        original = server.address
        try:
            if address is not None:
                server.address = address
            text, ids, final = completion(server.generate(request, transport=transport))
        finally:
            server.address = original
        self.assertTrue(text.strip(), text)
        self.assertEqual(len(ids), 4)
        self.assertEqual(final["finish_reason"], "FINISH_REASON_LENGTH")

    def assert_refused(self, name, server, transport, server_log_says):
        """A call with `transport` fails to connect, and the server's log gives the reason."""
        with self.assertRaises(GrpcError) as raised:
            server.grpcurl("grpc.health.v1.Health/Check", {}, timeout=60,
                           transport=[*transport, "-connect-timeout", "5"])
        message = raised.exception.message.strip()
        self.assertIn("Failed to dial target host", message)
        if server_log_says is not None:
            self.assertIn(server_log_says, server.log())
        detail = message.split(": ", 1)[-1]
        outcome = "handshake fails, no call"
        if server_log_says is not None:
            outcome += f"; server logs \"{server_log_says}\""
        RECORDED.append((name, outcome, f"grpcurl: {detail}"))
        return message


class TlsServerTest(TlsTestCase):

    def test_tls_serves_tls_clients_and_refuses_plaintext(self):
        ca_cert = self.ca[0]
        server = self.start(*self.tls_flags(), transport=["-cacert", ca_cert])
        self.assertIn("(TLS)", server.log())
        self.assertIn("(plain HTTP)", server.log())
        self.assert_generates_text(server)
        # The certificate names localhost too.
        self.assert_generates_text(server, address=f"localhost:{server.grpc_port}")
        # A client that does not speak TLS gets nothing; the server saw a non-TLS record.
        self.assert_refused("plaintext client, TLS port", server, ["-plaintext"],
                            "wrong version number")
        # A client that trusts another CA (with the same name) rejects the server.
        message = self.assert_refused("client trusting another CA of the same name", server,
                                      ["-cacert", self.impostor_ca[0]], None)
        self.assertIn("certificate signed by unknown authority", message)
        # Metrics stay plain HTTP.
        self.assertIsNotNone(server.metric("apex4_generated_tokens_total"))
        # Still serving TLS clients after the refused ones.
        self.assertEqual(server.health(), "SERVING")

    def test_a_server_certificate_from_another_ca_is_rejected_by_the_client(self):
        server = self.start(*self.tls_flags(cert=self.impostor_server_cert),
                            transport=["-cacert", self.impostor_ca[0]])
        self.assert_generates_text(server)  # it is a working TLS server for its own CA
        message = self.assert_refused("server certificate from another CA", server,
                                      ["-cacert", self.ca[0]], None)
        self.assertIn("certificate signed by unknown authority", message)

    def test_client_certificates_are_required_and_verified(self):
        ca_cert = self.ca[0]
        with_client_cert = ["-cacert", ca_cert, "-cert", self.client_cert[0],
                            "-key", self.client_cert[1]]
        server = self.start(*self.tls_flags(client_ca=ca_cert), transport=with_client_cert)
        self.assertIn("(TLS, client certificates required)", server.log())
        self.assert_generates_text(server)
        self.assert_refused("no client certificate, --tls_client_ca_file set", server,
                            ["-cacert", ca_cert], "peer did not return a certificate")
        # Signed by a key that is not the CA's, under the CA's name: the signature fails.
        self.assert_refused("client certificate from another CA of the same name", server,
                            ["-cacert", ca_cert, "-cert", self.impostor_client_cert[0],
                             "-key", self.impostor_client_cert[1]],
                            "certificate verify failed")
        self.assert_refused("plaintext client, --tls_client_ca_file set", server,
                            ["-plaintext"], "wrong version number")
        self.assert_generates_text(server)


class TlsFlagsTest(TlsTestCase):

    def run_binary(self, *flags):
        return subprocess.run([server_binary(), f"--model={model_path()}", "--grpc_port=0",
                               "--metrics_port=0", *flags],
                              capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)

    def test_bad_tls_flags_exit_1_naming_the_flag(self):
        cert, key = self.server_cert
        missing = os.path.join(self.workdir, "missing.pem")
        empty = self.pki.path("empty.pem")
        open(empty, "w", encoding="ascii").close()
        encrypted_key = self.pki.path("encrypted.key")
        openssl("pkey", "-in", key, "-aes256", "-passout", "pass:secret", "-out", encrypted_key)
        truncated = self.pki.path("truncated.pem")
        with open(cert, encoding="ascii") as source, \
                open(truncated, "w", encoding="ascii") as out:
            lines = source.read().splitlines()
            out.write("\n".join(lines[:3] + lines[-1:]) + "\n")
        cases = [
            # (input, flags, the flag the message must name, what else it must say)
            ("certificate without key", [f"--tls_cert_file={cert}"], "--tls_key_file",
             "go together"),
            ("key without certificate", [f"--tls_key_file={key}"], "--tls_cert_file",
             "go together"),
            ("client CA without certificate and key", [f"--tls_client_ca_file={self.ca[0]}"],
             "--tls_client_ca_file", "--tls_cert_file"),
            ("missing certificate file", [f"--tls_cert_file={missing}", f"--tls_key_file={key}"],
             "--tls_cert_file", missing),
            ("missing key file", [f"--tls_cert_file={cert}", f"--tls_key_file={missing}"],
             "--tls_key_file", missing),
            ("empty certificate file", [f"--tls_cert_file={empty}", f"--tls_key_file={key}"],
             "--tls_cert_file", "empty"),
            ("key file given as certificate", [f"--tls_cert_file={key}", f"--tls_key_file={key}"],
             "--tls_cert_file", "no PEM certificate"),
            ("truncated certificate",
             [f"--tls_cert_file={truncated}", f"--tls_key_file={key}"], "--tls_cert_file",
             "does not parse"),
            ("directory as certificate",
             [f"--tls_cert_file={self.workdir}", f"--tls_key_file={key}"], "--tls_cert_file",
             "Is a directory"),
            ("certificate given as key", [f"--tls_cert_file={cert}", f"--tls_key_file={cert}"],
             "--tls_key_file", "no PEM private key"),
            ("encrypted key",
             [f"--tls_cert_file={cert}", f"--tls_key_file={encrypted_key}"], "--tls_key_file",
             "encrypted"),
            ("key of another certificate",
             [f"--tls_cert_file={cert}", f"--tls_key_file={self.client_cert[1]}"],
             "--tls_key_file", "does not belong"),
            ("missing client CA file", [*self.tls_flags(), f"--tls_client_ca_file={missing}"],
             "--tls_client_ca_file", missing),
            ("key file given as client CA", [*self.tls_flags(), f"--tls_client_ca_file={key}"],
             "--tls_client_ca_file", "no PEM certificate"),
        ]
        for name, flags, named, detail in cases:
            with self.subTest(name):
                result = self.run_binary(*flags)
                self.assertEqual(result.returncode, 1, result.stderr)
                error = [line for line in result.stderr.splitlines() if "error" in line]
                self.assertTrue(error, result.stderr)
                self.assertIn(named, error[-1])
                self.assertIn(detail, error[-1])
                # Stopped before opening a port, let alone loading the model.
                self.assertNotIn("gRPC on port", result.stderr)
                message = error[-1].split("error: ", 1)[-1].replace(self.workdir, "$TMP")
                RECORDED.append((name, "exit 1 before serving", message))

if __name__ == "__main__":
    unittest.main()
