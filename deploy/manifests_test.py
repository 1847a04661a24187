"""Checks deploy/ without a container engine or a cluster.

- Dockerfiles: hadolint; their ignore files keep every build input and drop models and Bazel
  trees; the builder installs what tools/setup.sh installs for the build; the CUDA architectures
  agree with third_party/cuda.bzl; the profile init script behaves (with stand-in nvidia-smi and
  apex4_probe).
- Kubernetes: yamllint on the sources; every kustomization rendered by a real kustomize and each
  object validated against pinned Kubernetes schemas (1.30 and 1.37, strict); the objects agree
  with one another (selectors, named ports, probes, flag files, drain timing, GPU requests,
  security context, profile wiring, autoscaler metric <-> adapter rule).
- Monitoring: every PromQL expression of the dashboard and the adapter parses (promtool).

deploy/server_consistency_test.py checks the same manifests against the real binaries.
"""
import json
import os
import re
import stat
import tempfile
import textwrap
import unittest

import jsonschema
import kubernetes_validate
import yaml

import deploy_testlib as lib

# Oldest Kubernetes the manifests support (native gRPC probes are GA from 1.27; 1.30 is the
# oldest minor still maintained by the major clouds), and the newest schemas kubernetes-validate has.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
DOCKERFILES = ("server.Dockerfile", "probe.Dockerfile")
# Packages tools/setup.sh installs that only tests, fuzzing and local runs use, not the build.
NOT_BUILD_PACKAGES = {"python3-grpcio", "prometheus", "unzip", "openssl", "clang",
                      "libclang-rt-14-dev"}
PRESTOP_SLEEP = re.compile(r"^(/bin/|/usr/bin/)?sleep$")


def overlays():
    return {pool: lib.render("overlays/" + pool) for pool in lib.POOLS}


def pod_spec(objects):
    return lib.one(objects, "Deployment", "apex4-server")["spec"]["template"]["spec"]


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


class DockerfileTest(unittest.TestCase):
    def test_hadolint(self):
        hadolint = lib.tool("hadolint")
        for name in DOCKERFILES:
            out = lib.run([hadolint, "--no-color", lib.path("deploy", "docker", name)])
            self.assertEqual(out.returncode, 0, "hadolint %s:\n%s" % (name, out.stdout))

    def test_ignore_files_keep_build_inputs_and_drop_the_rest(self):
        keep = ["WORKSPACE", ".bazelrc", "BUILD", "third_party/system.BUILD", "third_party/cuda.bzl",
                "third_party/rules_cc/cc/defs.bzl", "proto/apex4/v1/generation.proto", "server/BUILD",
                "server/server_main.cc", "engine/BUILD", "kernels/BUILD", "tools/probe/BUILD",
                "tools/probe/apex4_probe.cc", "engine/cuda/BUILD", "engine/cuda/cuda_engine.cc",
                "engine/planner/cuda_throughput.cu", "kernels/cuda/BUILD"]
        drop = [".git/HEAD", "bazel-bin/server/apex4_server", "bazel-out/k8-opt/bin/x",
                "models/SmolLM2-135M-Instruct.Q4_1.gguf", "tools/quantizer/__pycache__/int4.pyc",
                "engine/testdata/tiny.gguf", "deploy/k8s/base/deployment.yaml"]
        for name in DOCKERFILES:
            patterns = dockerignore_patterns(lib.read("deploy", "docker", name + ".dockerignore"))
            copied = [src for word, rest in lib.dockerfile_instructions(lib.read("deploy", "docker", name))
                      if word == "COPY" and "--from=" not in rest
                      for src in rest.split()[:-1] if src != "."]
            self.assertTrue(copied, name)
            for f in keep + copied:
                self.assertFalse(dockerignored(patterns, f), "%s: the build needs %s" % (name, f))
            for f in drop:
                self.assertTrue(dockerignored(patterns, f), "%s: %s should stay out" % (name, f))
            for f in copied:
                self.assertTrue(os.path.exists(lib.path(f)), "%s copies %s, which is missing" % (name, f))

    def test_builder_installs_what_setup_installs_for_the_build(self):
        setup = lib.read("tools", "setup.sh")
        match = re.search(r"APT_PACKAGES=\((.*?)\)", setup, re.S)
        self.assertIsNotNone(match, "APT_PACKAGES=( ... ) not found in tools/setup.sh")
        needed = set(match.group(1).split()) - NOT_BUILD_PACKAGES
        script = lib.read("deploy", "docker", "install-build-deps")
        installed = set(re.findall(r"[a-z0-9][a-z0-9+.-]+", script.split("apt-get install")[-1]))
        self.assertEqual(needed - installed, set(),
                         "tools/setup.sh installs these for the build; install-build-deps does not")

    def test_cuda_architectures_match_the_build(self):
        cuda_bzl = lib.read("third_party", "cuda.bzl")
        built = set(re.findall(r"code=sm_(\w+)", cuda_bzl))
        self.assertIn("APEX4_CUDA_ARCHS", cuda_bzl,
                      "third_party/cuda.bzl does not read APEX4_CUDA_ARCHS, so the Dockerfiles' "
                      "CUDA_ARCHS build argument would change nothing")
        for name in DOCKERFILES:
            text = lib.read("deploy", "docker", name)
            default = re.search(r'^ARG CUDA_ARCHS="([^"]*)"', text, re.M)
            self.assertIsNotNone(default, name)
            self.assertEqual(set(default.group(1).split()), built, name)
            self.assertIn('--action_env=APEX4_CUDA_ARCHS="${CUDA_ARCHS}"', text, name)

    def test_runtime_runs_as_the_manifests_user(self):
        uid = pod_spec(overlays()["h100"])["securityContext"]["runAsUser"]
        for name in DOCKERFILES:
            users = [rest for word, rest in lib.dockerfile_instructions(lib.read("deploy", "docker", name))
                     if word == "USER"]
            self.assertEqual(users, ["%d:%d" % (uid, uid)], name)

    def test_runtime_packages_script(self):
        script = lib.path("deploy", "docker", "runtime-packages")
        out = lib.run([script, "/bin/ls"], stderr=None)
        self.assertEqual(out.returncode, 0, out.stdout)
        self.assertIn("libc6", out.stdout.split())
        with tempfile.TemporaryDirectory(dir=os.environ.get("TEST_TMPDIR")) as tmp:
            # A binary that loads a library no package owns: refused rather than left out.
            with open(os.path.join(tmp, "lonely.c"), "w") as f:
                f.write("int lonely(void) { return 1; }\n")
            with open(os.path.join(tmp, "main.c"), "w") as f:
                f.write("int lonely(void);\nint main(void) { return lonely(); }\n")
            cc = lib.tool("cc")
            for args in (["-shared", "-fPIC", "-o", "libapex4lonely.so", "lonely.c"],
                         ["-o", "main", "main.c", "-L.", "-lapex4lonely", "-Wl,-rpath," + tmp]):
                built = lib.run([cc] + args, cwd=tmp)
                self.assertEqual(built.returncode, 0, built.stdout)
            out = lib.run([script, os.path.join(tmp, "main")])
            self.assertNotEqual(out.returncode, 0, out.stdout)
            self.assertIn("no package owns", out.stdout)
            # ... and one whose library is missing altogether.
            os.remove(os.path.join(tmp, "libapex4lonely.so"))
            out = lib.run([script, os.path.join(tmp, "main")])
            self.assertNotEqual(out.returncode, 0, out.stdout)
            self.assertIn("libapex4lonely.so", out.stdout)


def dockerignore_patterns(text):
    return [line.strip().lstrip("/") for line in text.splitlines()
            if line.strip() and not line.startswith("#")]


def dockerignored(patterns, relpath):
    """Docker's rule: a path is excluded when the last pattern matching it or one of its parent
    folders is not a '!' exception."""
    def to_regex(pattern):
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out + "$")
    parts = relpath.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = to_regex(pattern[1:] if negate else pattern)
        if any(regex.match(p) for p in prefixes):
            excluded = not negate
    return excluded


class ProfileInitScriptTest(unittest.TestCase):
    """deploy/docker/apex4-profile-init with a stand-in nvidia-smi and apex4_probe on PATH."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        self.bin = os.path.join(self.tmp, "bin")
        self.store = os.path.join(self.tmp, "store")
        self.link = os.path.join(self.tmp, "run", "profile.json")
        self.calls = os.path.join(self.tmp, "probe-calls")
        os.makedirs(self.bin)
        os.makedirs(self.store)
        os.makedirs(os.path.dirname(self.link))
        self.gpu("GPU-5f1c2a3e-0000-1111-2222-333344445555, 580.95.05")
        self.stub("apex4_probe", """\
            echo "$*" >> "%s"
            for a in "$@"; do case "$a" in --output=*) out="${a#--output=}" ;; esac; done
            [ -z "${PROBE_FAILS:-}" ] || exit 1
            echo '{"format": "apex4.node_profile"}' > "$out.tmp" && mv "$out.tmp" "$out"
            """ % self.calls)

    def stub(self, name, body):
        exe = os.path.join(self.bin, name)
        with open(exe, "w") as f:
            f.write("#!/bin/sh\n" + textwrap.dedent(body))
        os.chmod(exe, os.stat(exe).st_mode | stat.S_IXUSR)

    def gpu(self, line):
        self.stub("nvidia-smi", """\
            case "$*" in *--query-gpu=uuid,driver_version*) echo '%s' ;; *) exit 9 ;; esac
            """ % line)

    def init(self, **env):
        full = {"PATH": self.bin + os.pathsep + "/usr/bin:/bin", "APEX4_PROFILE_STORE": self.store,
                "APEX4_PROFILE_LINK": self.link}
        full.update(env)
        return lib.run([lib.path("deploy", "docker", "apex4-profile-init")], env=full)

    def probe_calls(self):
        if not os.path.exists(self.calls):
            return []
        with open(self.calls) as f:
            return f.read().splitlines()

    def test_probes_once_per_gpu_and_driver_and_links_the_profile(self):
        profile = os.path.join(self.store, "GPU-5f1c2a3e-0000-1111-2222-333344445555.json")
        out = self.init()
        self.assertEqual(out.returncode, 0, out.stdout)
        self.assertEqual(self.probe_calls(), ["--output=%s --backend=cuda" % profile])
        self.assertEqual(os.readlink(self.link), profile)

        out = self.init()
        self.assertEqual(out.returncode, 0, out.stdout)
        self.assertEqual(len(self.probe_calls()), 1, "a valid stored profile is measured again")
        self.assertIn("reusing", out.stdout)

        self.gpu("GPU-5f1c2a3e-0000-1111-2222-333344445555, 590.10.01")
        self.assertEqual(self.init().returncode, 0)
        self.assertEqual(len(self.probe_calls()), 2, "a driver update must trigger a new probe")

        self.assertEqual(self.init(APEX4_PROBE_ARGS="--backend=cuda --shapes=576x640").returncode, 0)
        self.assertEqual(self.probe_calls()[-1], "--output=%s --backend=cuda --shapes=576x640" % profile)

    def test_another_gpu_gets_its_own_profile(self):
        self.assertEqual(self.init().returncode, 0)
        self.gpu("GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee, 580.95.05")
        self.assertEqual(self.init().returncode, 0)
        self.assertEqual(len(self.probe_calls()), 2)
        self.assertEqual(os.readlink(self.link),
                         os.path.join(self.store, "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee.json"))

    def test_refuses_a_uuid_that_is_not_one(self):
        for bad in ("GPU-../../etc/passwd, 580.95.05", "MIG-1234, 580", ", 580", "GPU-1234, "):
            self.gpu(bad)
            out = self.init()
            self.assertNotEqual(out.returncode, 0, bad)
            self.assertEqual(self.probe_calls(), [], bad)
            self.assertFalse(os.path.lexists(self.link), bad)

    def test_fails_without_a_gpu_or_when_the_probe_fails(self):
        self.stub("nvidia-smi", "exit 6\n")
        out = self.init()
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("nvidia.com/gpu", out.stdout)
        self.gpu("GPU-5f1c2a3e-0000-1111-2222-333344445555, 580.95.05")
        self.assertNotEqual(self.init(PROBE_FAILS="1").returncode, 0)
        self.assertEqual(os.listdir(self.store), [], "a failed probe left a stamp or a profile")
        self.assertFalse(os.path.lexists(self.link))


class ManifestTest(unittest.TestCase):
    def test_yamllint(self):
        out = lib.run([lib.tool("yamllint"), "--strict", "-c", lib.path("deploy", "yamllint.yaml"),
                       lib.path("deploy", "k8s")])
        self.assertEqual(out.returncode, 0, out.stdout)

    def test_every_object_validates_against_pinned_schemas(self):
        with open(lib.path("deploy", "testdata", "servicemonitor-v1-subset.schema.json")) as f:
            servicemonitor = json.load(f)
        kinds = set()
        for kustomization in lib.KUSTOMIZATIONS:
            for obj in lib.render(kustomization):
                kinds.add(obj["kind"])
                where = "%s: %s/%s" % (kustomization, obj["kind"], obj["metadata"]["name"])
                if obj["apiVersion"].startswith("monitoring.coreos.com/"):
                    self.assertEqual(obj["kind"], "ServiceMonitor", where)
                    jsonschema.Draft202012Validator(servicemonitor).validate(obj)
                    continue
                for version in KUBERNETES_VERSIONS:
                    try:
                        kubernetes_validate.validate(obj, version, strict=True)
                    except kubernetes_validate.utils.ValidationError as e:
                        self.fail("%s (Kubernetes %s): %s at %s" % (
                            where, version, e.message, "/".join(map(str, e.path))))
        self.assertTrue({"Namespace", "PersistentVolumeClaim", "Deployment", "Service", "ConfigMap",
                         "PodDisruptionBudget", "HorizontalPodAutoscaler", "ServiceMonitor",
                         "ServiceAccount"} <= kinds, kinds)

    def test_schema_validation_catches_a_mistake(self):
        # The validation above is only worth something if it refuses a wrong manifest.
        deployment = json.loads(json.dumps(lib.one(overlays()["h100"], "Deployment")))
        deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["grpc"]["port"] = "grpc"
        with self.assertRaises(kubernetes_validate.utils.ValidationError):
            kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)

    def test_pools_select_only_their_own_pods(self):
        rendered = overlays()
        names = {}
        for pool, objects in rendered.items():
            labels = lib.one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
            self.assertEqual(labels.get("apex4.dev/gpu-pool"), pool)
            deployment = lib.one(objects, "Deployment")
            selectors = {"Deployment": deployment["spec"]["selector"]["matchLabels"]}
            for service in lib.find(objects, "Service"):
                selectors["Service " + service["metadata"]["name"]] = service["spec"]["selector"]
            selectors["PodDisruptionBudget"] = lib.one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]
            anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
            for term in anti["preferredDuringSchedulingIgnoredDuringExecution"]:
                selectors["podAntiAffinity"] = term["podAffinityTerm"]["labelSelector"]["matchLabels"]
            service_labels = lib.one(objects, "Service", "apex4-server-" + pool)["metadata"]["labels"]
            monitor = lib.one(objects, "ServiceMonitor")["spec"]["selector"]["matchLabels"]
            self.assertTrue(matches(monitor, service_labels), "%s: ServiceMonitor misses its Service" % pool)
            for what, selector in selectors.items():
                self.assertTrue(matches(selector, labels), "%s: %s misses its pods" % (pool, what))
                for other, other_objects in rendered.items():
                    if other != pool:
                        other_labels = lib.one(other_objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
                        self.assertFalse(matches(selector, other_labels),
                                         "%s: %s also selects %s pods" % (pool, what, other))
            hpa = lib.one(objects, "HorizontalPodAutoscaler")
            self.assertEqual(hpa["spec"]["scaleTargetRef"]["name"], deployment["metadata"]["name"])
            self.assertNotIn("replicas", deployment["spec"], "%s: apply would undo the autoscaler" % pool)
            for obj in objects:
                key = (obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])
                self.assertNotIn(key, names, "%s and %s both create %s" % (names.get(key), pool, key))
                names[key] = pool

    def test_ports_agree(self):
        for pool, objects in overlays().items():
            flags = lib.server_flags(objects)
            spec = pod_spec(objects)
            server = lib.container(spec, "apex4-server")
            ports = {p["name"]: p["containerPort"] for p in server["ports"]}
            self.assertEqual(ports, {"grpc": int(flags["grpc_port"]), "metrics": int(flags["metrics_port"])}, pool)
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                self.assertEqual(server[probe]["grpc"], {"port": ports["grpc"], "service": ""}, (pool, probe))
            annotations = lib.one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
            self.assertEqual(annotations["prometheus.io/port"], str(ports["metrics"]), pool)
            self.assertEqual(annotations["prometheus.io/scrape"], "true", pool)
            for service in lib.find(objects, "Service"):
                for port in service["spec"]["ports"]:
                    self.assertIn(port["targetPort"], ports, (pool, service["metadata"]["name"]))
                    self.assertEqual(port["port"], ports[port["targetPort"]], (pool, port))
            monitor = lib.one(objects, "ServiceMonitor")
            main_service = lib.one(objects, "Service", "apex4-server-" + pool)
            for endpoint in monitor["spec"]["endpoints"]:
                self.assertIn(endpoint["port"], [p["name"] for p in main_service["spec"]["ports"]])
                self.assertEqual(endpoint["path"], annotations["prometheus.io/path"])

    def test_drain_fits_in_the_grace_period(self):
        for pool, objects in overlays().items():
            flags = lib.server_flags(objects)
            spec = pod_spec(objects)
            server = lib.container(spec, "apex4-server")
            command = server["lifecycle"]["preStop"]["exec"]["command"]
            self.assertRegex(command[0], PRESTOP_SLEEP, pool)
            prestop = int(command[1])
            drain = int(flags["shutdown_grace_seconds"])
            self.assertGreater(spec["terminationGracePeriodSeconds"], prestop + drain, pool)
            live = server["livenessProbe"]
            self.assertGreater(live["periodSeconds"] * live["failureThreshold"], drain,
                               "%s: liveness could restart a draining pod" % pool)
            startup = server["startupProbe"]
            startup_window = startup["periodSeconds"] * startup["failureThreshold"]
            self.assertGreaterEqual(startup_window, 600,
                                    "%s: start-up probe shorter than model load + probing" % pool)
            deployment = lib.one(objects, "Deployment")
            self.assertGreater(deployment["spec"]["progressDeadlineSeconds"], startup_window + 120,
                               "%s: a rollout would fail while a pod still loads" % pool)

    def test_one_gpu_on_gpu_nodes(self):
        for pool, objects in overlays().items():
            spec = pod_spec(objects)
            for c in spec["containers"] + spec["initContainers"]:
                self.assertEqual(c["resources"]["limits"]["nvidia.com/gpu"], 1, (pool, c["name"]))
                self.assertEqual(c["resources"]["requests"]["nvidia.com/gpu"], 1, (pool, c["name"]))
                self.assertIn("memory", c["resources"]["limits"], (pool, c["name"]))
            self.assertIn({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                          spec["tolerations"], pool)
            terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            products = [v for t in terms for e in t["matchExpressions"] if e["key"] == "nvidia.com/gpu.product"
                        for v in e["values"]]
            self.assertTrue(products, pool)
            self.assertTrue(all(pool.upper() in p for p in products), (pool, products))
            flags = lib.server_flags(objects)
            server = lib.container(spec, "apex4-server")
            self.assertEqual(int(flags["threads"]), int(server["resources"]["requests"]["cpu"]),
                             "%s: --threads should be the pod's CPU request" % pool)
            # The pod's GPU serves the model: no silent fallback to the CPU (--backend=auto).
            self.assertEqual(flags.get("backend"), "cuda", pool)
            self.assertIn(flags.get("gpu_weights", ""), ("", "w4a4", "bf16", "fp8"), pool)

    def test_security_context(self):
        for pool, objects in overlays().items():
            spec = pod_spec(objects)
            self.assertFalse(spec["automountServiceAccountToken"])
            pod = spec["securityContext"]
            self.assertTrue(pod["runAsNonRoot"], pool)
            self.assertNotEqual(pod["runAsUser"], 0, pool)
            self.assertEqual(pod["seccompProfile"], {"type": "RuntimeDefault"}, pool)
            for c in spec["containers"] + spec["initContainers"]:
                sc = c["securityContext"]
                self.assertTrue(sc["readOnlyRootFilesystem"], (pool, c["name"]))
                self.assertFalse(sc["allowPrivilegeEscalation"], (pool, c["name"]))
                self.assertEqual(sc["capabilities"], {"drop": ["ALL"]}, (pool, c["name"]))
                self.assertFalse(sc.get("privileged", False), (pool, c["name"]))
            server = lib.container(spec, "apex4-server")
            self.assertNotIn("runAsUser", server["securityContext"], "the server runs as the pod's user")
            volumes = {v["name"]: v for v in spec["volumes"]}
            for mount in server["volumeMounts"]:
                writable = not mount.get("readOnly", False)
                if writable:
                    self.assertIn("emptyDir", volumes[mount["name"]], (pool, mount))
                if "hostPath" in volumes[mount["name"]] or "persistentVolumeClaim" in volumes[mount["name"]]:
                    self.assertFalse(writable, "%s: the server may not write %s" % (pool, mount["mountPath"]))
            self.assertTrue(volumes["models"]["persistentVolumeClaim"]["readOnly"], pool)
            tmp = [m for m in server["volumeMounts"] if m["mountPath"] == "/tmp"]
            self.assertEqual(len(tmp), 1, "%s: a read-only root needs /tmp on an emptyDir" % pool)
            self.assertIn("sizeLimit", volumes[tmp[0]["name"]]["emptyDir"])

    def test_profile_reaches_the_server(self):
        probe_dockerfile = lib.read("deploy", "docker", "probe.Dockerfile")
        for pool, objects in overlays().items():
            spec = pod_spec(objects)
            flags = lib.server_flags(objects)
            server = lib.container(spec, "apex4-server")
            init = lib.container(spec, "apex4-profile", init=True)
            env = {e["name"]: e["value"] for e in init["env"]}
            self.assertEqual(env["APEX4_PROFILE_LINK"], flags["profile"], pool)
            self.assertIn("COPY deploy/docker/apex4-profile-init %s" % init["command"][0], probe_dockerfile)

            def mount_of(c, target):
                found = [m for m in c["volumeMounts"]
                         if target == m["mountPath"] or target.startswith(m["mountPath"].rstrip("/") + "/")]
                self.assertTrue(found, "%s: %s has nothing mounted at %s" % (pool, c["name"], target))
                return max(found, key=lambda m: len(m["mountPath"]))
            link_init, link_server = mount_of(init, flags["profile"]), mount_of(server, flags["profile"])
            self.assertEqual(link_init["name"], link_server["name"], pool)
            self.assertEqual(link_init["mountPath"], link_server["mountPath"], pool)
            # The link points into the store at the init container's path; the server must see the
            # store at that same path, read-only.
            store_init = mount_of(init, env["APEX4_PROFILE_STORE"])
            store_server = mount_of(server, env["APEX4_PROFILE_STORE"])
            self.assertEqual((store_init["name"], store_init["mountPath"]),
                             (store_server["name"], store_server["mountPath"]), pool)
            self.assertTrue(store_server["readOnly"], pool)
            volume = [v for v in spec["volumes"] if v["name"] == store_init["name"]][0]
            self.assertEqual(volume["hostPath"]["type"], "DirectoryOrCreate", pool)

    def test_autoscaler_metric_is_served_by_the_adapter(self):
        rules = yaml.safe_load(lib.read("deploy", "k8s", "monitoring", "prometheus-adapter-rules.yaml"))["rules"]
        served = {r["name"]["as"] for r in rules}
        configmap = lib.one(lib.render("monitoring"), "ConfigMap", "prometheus-adapter-apex4")
        self.assertEqual(yaml.safe_load(configmap["data"]["config.yaml"])["rules"], rules)
        for pool, objects in overlays().items():
            hpa = lib.one(objects, "HorizontalPodAutoscaler")
            self.assertGreater(hpa["spec"]["maxReplicas"], hpa["spec"]["minReplicas"])
            for metric in hpa["spec"]["metrics"]:
                self.assertEqual(metric["type"], "Pods", pool)
                self.assertIn(metric["pods"]["metric"]["name"], served, pool)

    def test_dashboard(self):
        dashboard = json.loads(lib.read("deploy", "k8s", "monitoring", "grafana-dashboard.json"))
        configmap = lib.one(lib.render("monitoring"), "ConfigMap", "apex4-grafana-dashboard")
        self.assertEqual(configmap["metadata"]["labels"]["grafana_dashboard"], "1")
        self.assertEqual(json.loads(configmap["data"]["apex4.json"]), dashboard)
        ids = [p["id"] for p in dashboard["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        exprs = "\n".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
        for needed in ("rate(apex4_generated_tokens_total",
                       "histogram_quantile(0.99, sum by (le) (rate(apex4_time_to_first_token_seconds_bucket",
                       "histogram_quantile(0.99, sum by (le) (rate(apex4_request_duration_seconds_bucket",
                       "sum by (kernel) (rate(apex4_kernel_seconds_sum", "apex4_queue_depth{",
                       "apex4_batch_size{"):
            self.assertIn(needed, exprs)

    def test_promql_parses(self):
        """Every dashboard and adapter expression, with Grafana's and the adapter's template
        variables filled in, through promtool's parser."""
        exprs = []
        dashboard = json.loads(lib.read("deploy", "k8s", "monitoring", "grafana-dashboard.json"))
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                exprs.append(target["expr"].replace("$__rate_interval", "5m")
                             .replace("$namespace", "apex4").replace("$job", ".+"))
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                inner = re.fullmatch(r"label_values\((.*), \w+\)", variable["definition"])
                self.assertIsNotNone(inner, variable["definition"])
                exprs.append(inner.group(1).replace("$namespace", "apex4"))
        rules = yaml.safe_load(lib.read("deploy", "k8s", "monitoring", "prometheus-adapter-rules.yaml"))["rules"]
        for rule in rules:
            series = re.match(r"\w+", rule["seriesQuery"]).group(0)
            exprs.append(rule["seriesQuery"])
            exprs.append(rule["metricsQuery"].replace("<<.Series>>", series)
                         .replace("<<.LabelMatchers>>", 'namespace="apex4",pod=~"a|b"')
                         .replace("<<.GroupBy>>", "pod"))
        records = {"groups": [{"name": "apex4-check", "rules": [
            {"record": "apex4:check_%d" % i, "expr": e} for i, e in enumerate(exprs)]}]}
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=os.environ.get("TEST_TMPDIR")) as f:
            yaml.safe_dump(records, f)
            f.flush()
            out = lib.run([lib.tool("promtool"), "check", "rules", f.name])
        self.assertEqual(out.returncode, 0, out.stdout)
        self.assertIn("SUCCESS: %d rules found" % len(exprs), out.stdout)


if __name__ == "__main__":
    unittest.main()
