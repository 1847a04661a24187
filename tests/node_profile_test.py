"""Issue 5 on the real server: the node profile is read at start-up when it belongs to this
device, and otherwise (missing, corrupt, or measured on another device) the server probes, says
why, replaces the file and still serves; rho reaches the metrics and GetModelInfo."""

import json
import os
import re
import tempfile
import unittest

from server_harness import SERVICE, Server


def node_rho(server):
    """(value, source label) of apex4_node_rho."""
    for line in server.metrics_page().splitlines():
        match = re.match(r'apex4_node_rho\{.*source="(\w+)".*\} (\S+)$', line)
        if match:
            return float(match.group(2)), match.group(1)
    return None, None


class NodeProfileTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="apex4_profile_")
        self.path = os.path.join(self.dir, "node.json")

    def serve(self, *flags, env_profile=None):
        if env_profile is not None:
            os.environ["APEX4_PROFILE"] = env_profile
        try:
            server = Server(*flags)
        finally:
            os.environ.pop("APEX4_PROFILE", None)
        self.addCleanup(server.stop)
        server.wait_serving()
        return server

    def read_profile(self):
        with open(self.path, encoding="utf-8") as f:
            return json.load(f)

    def test_missing_profile_is_probed_saved_and_reused(self):
        server = self.serve(f"--profile={self.path}")
        self.assertRegex(server.log(), r"node profile: probed cpu .* because .*cannot open")
        profile = self.read_profile()
        self.assertEqual(profile["format"], "apex4.node_profile")
        self.assertEqual(profile["device"]["backend"], "cpu")
        rho, source = node_rho(server)
        self.assertEqual(source, "probe")
        self.assertAlmostEqual(rho, profile["rho"], places=6)
        info = server.grpcurl(f"{SERVICE}/GetModelInfo", {})[0]
        self.assertAlmostEqual(info["rho"], rho, places=6)
        self.assertEqual(server.stop(), 0)

        # The next start (profile given through the environment, as a pod's volume would) reads
        # the saved file instead of measuring again.
        again = self.serve(env_profile=self.path)
        self.assertIn(f"node profile: loaded {self.path}", again.log())
        rho_again, source_again = node_rho(again)
        self.assertEqual(source_again, "file")
        self.assertAlmostEqual(rho_again, rho, places=6)

    def test_corrupt_profile_is_reported_and_replaced(self):
        with open(self.path, "w", encoding="utf-8") as f:
            f.write('{"format": "apex4.node_profile", "version": 1, "device": ')
        server = self.serve(f"--profile={self.path}")
        self.assertIn("not valid JSON", server.log())
        self.assertEqual(self.read_profile()["version"], 1)  # replaced by a whole profile
        reply = server.generate({"text": "Hello", "sampling": {"max_tokens": 2}})
        self.assertEqual(reply[-1]["usage"]["completion_tokens"], 2)

    def test_foreign_profile_is_not_applied(self):
        self.serve(f"--profile={self.path}").stop()
        foreign = self.read_profile()
        foreign["device"]["uuid"] = "GPU-00000000-0000-0000-0000-000000000000"
        foreign["throughput"]["fp32_fma_flops"] = 1.0  # a rho nobody could measure here
        with open(self.path, "w", encoding="utf-8") as f:
            json.dump(foreign, f)
        server = self.serve(f"--profile={self.path}")
        self.assertRegex(server.log(), r"was measured on .*GPU-00000000-0000")
        rho, source = node_rho(server)
        self.assertEqual(source, "probe")
        self.assertLess(rho, 1e6)
        self.assertNotEqual(self.read_profile()["device"]["uuid"], foreign["device"]["uuid"])

    def test_profile_of_a_future_version_is_replaced(self):
        self.serve(f"--profile={self.path}").stop()
        future = self.read_profile()
        future["version"] = 99
        with open(self.path, "w", encoding="utf-8") as f:
            json.dump(future, f)
        server = self.serve(f"--profile={self.path}")
        self.assertIn("'version' is 99", server.log())
        self.assertEqual(self.read_profile()["version"], 1)


if __name__ == "__main__":
    unittest.main()
