"""The manifests and images against the real binaries.

- Every flag the manifests pass exists in `apex4_server --helpfull` / `apex4_probe --helpfull`.
- The ports in the flag files are the flags' defaults, which the images EXPOSE and HEALTHCHECK.
- The rendered flag files of every pool start the real server: it loads the default model,
  reads the profile that the init script wrote with the real probe, answers the gRPC health
  check that the Kubernetes probes make, exports every metric that the dashboard, the adapter
  rules and the autoscalers use, and stops on SIGTERM within the grace period.
Everything runs on loopback with bounded waits.

The pools serve with --backend=cuda, and CI machines have no GPU: the test appends
--backend=auto to each pool's flags, which serves on the CPU there (a GPU machine would take its
GPU), the rest of the flag files as the pod passes them (the CUDA-only --gpu_weights is logged as
ignored on the CPU). That --backend=cuda without a GPU exits 1 with the engine's reason is
//tests:server_lifecycle_test's; that the pools ask for the GPU, manifests_test's.
"""
import json
import os
import re
import signal
import socket
import stat
import subprocess
import tempfile
import time
import unittest
import urllib.request

import yaml

import deploy_testlib as lib

MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
START_TIMEOUT_S = 120


def runfile(*candidates):
    roots = [os.environ.get("TEST_SRCDIR", ""), os.environ.get("RUNFILES_DIR", "")]
    for root in roots:
        for candidate in candidates:
            full = os.path.join(root, candidate)
            if root and os.path.exists(full):
                return full
    raise AssertionError("none of %s in the runfiles" % (candidates,))


def server_binary():
    return os.environ.get("APEX4_SERVER") or runfile("apex4/server/apex4_server")


def probe_binary():
    return os.environ.get("APEX4_PROBE") or runfile("apex4/tools/probe/apex4_probe")


def model():
    return os.environ.get("APEX4_MODEL") or runfile("default_model/" + MODEL,
                                                    "apex4/external/default_model/" + MODEL)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read(file_path):
    with open(file_path) as f:
        return f.read()


def helpfull(binary):
    out = lib.run([binary, "--helpfull"])
    flags = lib.parse_helpfull(out.stdout)
    assert "flagfile" in flags, "no abseil flags in %s --helpfull:\n%s" % (binary, out.stdout)
    return flags


def metric_names_used():
    """Metric names the dashboard, the adapter rules and the autoscalers read."""
    names = set()
    dashboard = json.loads(lib.read("deploy", "k8s", "monitoring", "grafana-dashboard.json"))
    texts = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    texts += [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    rules = yaml.safe_load(lib.read("deploy", "k8s", "monitoring", "prometheus-adapter-rules.yaml"))
    texts += [r["seriesQuery"] for r in rules["rules"]]
    for text in texts:
        names |= set(re.findall(r"\bapex4_[a-z0-9_]+", text))
    served = {r["name"]["as"]: re.match(r"\w+", r["seriesQuery"]).group(0) for r in rules["rules"]}
    for pool in lib.POOLS:
        hpa = lib.one(lib.render("overlays/" + pool), "HorizontalPodAutoscaler")
        names |= {served[m["pods"]["metric"]["name"]] for m in hpa["spec"]["metrics"]}
    return names


class FlagsTest(unittest.TestCase):
    def test_every_manifest_flag_exists(self):
        known = helpfull(server_binary())
        for pool in lib.POOLS:
            objects = lib.render("overlays/" + pool)
            flags = lib.server_flags(objects)
            self.assertEqual(set(flags) - set(known), set(), "%s: flags apex4_server lacks" % pool)
            server = lib.container(lib.one(objects, "Deployment")["spec"]["template"]["spec"], "apex4-server")
            for arg in server.get("args", []):
                self.assertIn(re.match(r"--(\w+)", arg).group(1), known, arg)

    def test_ports_are_the_flag_defaults_the_images_use(self):
        known = helpfull(server_binary())
        grpc, metrics = int(known["grpc_port"]), int(known["metrics_port"])
        for pool in lib.POOLS:
            flags = lib.server_flags(lib.render("overlays/" + pool))
            self.assertEqual((int(flags["grpc_port"]), int(flags["metrics_port"])), (grpc, metrics), pool)
        dockerfile = lib.dockerfile_instructions(lib.read("deploy", "docker", "server.Dockerfile"))
        exposed = [int(p) for word, rest in dockerfile if word == "EXPOSE" for p in rest.split()]
        self.assertEqual(sorted(exposed), sorted([grpc, metrics]))
        healthcheck = [rest for word, rest in dockerfile if word == "HEALTHCHECK"]
        self.assertEqual(len(healthcheck), 1)
        self.assertIn('"-addr=127.0.0.1:%d"' % grpc, healthcheck[0])

    def test_probe_flags_exist(self):
        known = helpfull(probe_binary())
        script = lib.read("deploy", "docker", "apex4-profile-init")
        used = set(re.findall(r"apex4_probe --(\w+)=", script))
        default_args = re.search(r'APEX4_PROBE_ARGS:-([^}]*)\}', script).group(1)
        used |= set(re.findall(r"--(\w+)", default_args))
        for pool in lib.POOLS:
            spec = lib.one(lib.render("overlays/" + pool), "Deployment")["spec"]["template"]["spec"]
            init = lib.container(spec, "apex4-profile", init=True)
            for e in init.get("env", []):
                if e["name"] == "APEX4_PROBE_ARGS":
                    used |= set(re.findall(r"--(\w+)", e["value"]))
        self.assertIn("output", used)
        self.assertEqual(used - set(known), set(), "flags apex4_probe lacks")


class ServerStartsFromTheManifestsTest(unittest.TestCase):
    """Each pool's rendered flag files, as the pod passes them, plus what differs on this machine:
    free loopback ports, the test model, a small KV cache, one thread, and --backend=auto (the
    CPU where there is no GPU)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        # The init container's work, with the real probe on the CPU and a stand-in nvidia-smi.
        bin_dir = os.path.join(cls.tmp, "bin")
        os.makedirs(bin_dir)
        smi = os.path.join(bin_dir, "nvidia-smi")
        with open(smi, "w") as f:
            f.write("#!/bin/sh\necho 'GPU-00000000-1111-2222-3333-444444444444, 580.95.05'\n")
        os.chmod(smi, os.stat(smi).st_mode | stat.S_IXUSR)
        os.symlink(probe_binary(), os.path.join(bin_dir, "apex4_probe"))
        cls.store = os.path.join(cls.tmp, "store")
        cls.link = os.path.join(cls.tmp, "run", "profile.json")
        os.makedirs(cls.store)
        os.makedirs(os.path.dirname(cls.link))
        cls.init = lib.run([lib.path("deploy", "docker", "apex4-profile-init")], env={
            "PATH": bin_dir + os.pathsep + "/usr/bin:/bin",
            "APEX4_PROFILE_STORE": cls.store, "APEX4_PROFILE_LINK": cls.link,
            "APEX4_PROBE_ARGS": "--backend=cpu --shapes=576x640 --m_buckets=1,8 --threads=1"})

    def test_init_script_writes_a_profile_with_the_real_probe(self):
        self.assertEqual(self.init.returncode, 0, self.init.stdout)
        with open(self.link) as f:
            profile = json.load(f)
        self.assertEqual(profile["format"], "apex4.node_profile")
        self.assertEqual(os.path.dirname(os.path.realpath(self.link)), os.path.realpath(self.store))

    def test_each_pool_starts_serves_and_drains(self):
        self.assertEqual(self.init.returncode, 0, self.init.stdout)
        used = metric_names_used()
        self.assertTrue(used)
        for pool in lib.POOLS:
            with self.subTest(pool=pool):
                self.run_pool(pool, used)

    def run_pool(self, pool, used_metrics):
        objects = lib.render("overlays/" + pool)
        flags = lib.server_flags(objects)
        spec = lib.one(objects, "Deployment")["spec"]["template"]["spec"]
        server = lib.container(spec, "apex4-server")
        # The pod's flag files, written where the ConfigMap would be mounted.
        etc = os.path.join(self.tmp, pool, "etc")
        os.makedirs(etc)
        args = []
        for arg in server["args"]:
            if arg.startswith("--flagfile="):
                files = []
                for flagfile in arg[len("--flagfile="):].split(","):
                    directory, name = os.path.split(flagfile)
                    mount = [m for m in server["volumeMounts"] if m["mountPath"] == directory][0]
                    volume = [v for v in spec["volumes"] if v["name"] == mount["name"]][0]
                    configmap = lib.one(objects, "ConfigMap", volume["configMap"]["name"])
                    local = os.path.join(etc, name)
                    with open(local, "w") as f:
                        f.write(configmap["data"][name])
                    files.append(local)
                arg = "--flagfile=" + ",".join(files)
            args.append(arg)
        self.assertEqual(flags["profile"], "/run/apex4/profile.json")
        grpc_port, metrics_port = free_port(), free_port()
        command = [server_binary()] + args + [
            "--grpc_port=%d" % grpc_port, "--metrics_port=%d" % metrics_port, "--model=" + model(),
            "--kv_cache_mb=64", "--threads=1", "--profile=" + self.link, "--backend=auto"]
        log_path = os.path.join(self.tmp, pool, "server.log")
        with open(log_path, "w") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            # What the kubelet's gRPC probes ask: the health of service "" on the gRPC port.
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                health = lib.run([lib.tool("grpcurl"), "-plaintext", "-max-time", "5", "-d",
                                  '{"service": ""}', "127.0.0.1:%d" % grpc_port,
                                  "grpc.health.v1.Health/Check"])
                if health.returncode == 0 and json.loads(health.stdout) == {"status": "SERVING"}:
                    break
                if proc.poll() is not None:
                    self.fail("the server exited (%d) before SERVING:\n%s" % (proc.returncode, read(log_path)))
                if time.monotonic() > deadline:
                    self.fail("not SERVING within %d s (last: %s):\n%s" % (
                        START_TIMEOUT_S, health.stdout, read(log_path)))
                time.sleep(0.5)
            log = read(log_path)
            self.assertRegex(log, r"backend (cpu|cuda): --backend=auto found",
                             "the server did not say where it serves and why")
            self.assertIn(self.link, log, "the server did not say which profile it used")
            self.assertNotIn("probed", log, "the server probed instead of using the init script's profile")

            # One short generation, so that the per-method series exist and tokens are counted.
            generate = lib.run([lib.tool("grpcurl"), "-plaintext", "-max-time", "60", "-d",
                                '{"text": "Hello", "sampling": {"max_tokens": 2}}',
                                "127.0.0.1:%d" % grpc_port, "apex4.v1.Generation/Generate"])
            self.assertEqual(generate.returncode, 0, generate.stdout)

            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (
                    metrics_port, lib.one(objects, "ServiceMonitor")["spec"]["endpoints"][0]["path"]),
                    timeout=10) as response:
                exposition = response.read().decode()
            exported = set(re.findall(r"^# TYPE (\w+) ", exposition, re.M))
            generated = re.search(r"^apex4_generated_tokens_total(?:\{[^}]*\})? (\S+)$", exposition, re.M)
            self.assertIsNotNone(generated, exposition)
            self.assertEqual(float(generated.group(1)), 2.0)
            histogram = {n + s for n in exported for s in ("_bucket", "_sum", "_count")}
            self.assertEqual(used_metrics - exported - histogram, set(),
                             "used by deploy/k8s/monitoring or the HPAs but not exported")

            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            grace = int(flags["shutdown_grace_seconds"])
            self.assertEqual(proc.wait(timeout=grace + 10), 0, read(log_path))
            self.assertLess(time.monotonic() - started, spec["terminationGracePeriodSeconds"])
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    unittest.main()
