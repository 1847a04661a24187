"""cuda_library: CUDA sources compiled by the toolkit's nvcc into a static library (no rules_cuda offline)."""

# Architectures that ship: Hopper (wgmma needs the "a" target) and the INT4-tensor-core GPUs.
CUDA_GENCODE = [
    "-gencode=arch=compute_90a,code=sm_90a",
    "-gencode=arch=compute_80,code=sm_80",
    "-gencode=arch=compute_86,code=sm_86",
    "-gencode=arch=compute_89,code=sm_89",
]

def _gencode_words(gencode):
    """Shell words for nvcc: the target's gencode flags, narrowed to the compute capabilities in
    APEX4_CUDA_ARCHS (space-separated, e.g. "90a" or "80 89") when that is set with
    --action_env, as deploy/docker's CUDA_ARCHS build argument does. A target none of whose
    architectures is asked for keeps its own list, so that it still compiles."""
    flags = " ".join(gencode)
    return ("$$(sel=; for g in " + flags + "; do " +
            'case " $${APEX4_CUDA_ARCHS:-} " in *" $${g##*code=sm_} "*) sel="$$sel $$g";; esac; ' +
            'done; echo "$${sel:-' + flags + '}")')

def cuda_library(name, srcs, hdrs = [], deps = [], gencode = CUDA_GENCODE, copts = [], **kwargs):
    """Compiles srcs (.cu) with nvcc into lib<name>_cu.a and wraps it in a cc_library.

    Args:
      name: the cc_library's name.
      srcs: .cu files, compiled together into one static library.
      hdrs: headers the .cu files include (and that dependents see).
      deps: cc_library targets whose headers the .cu files include (header-only use).
      gencode: nvcc -gencode flags.
      copts: extra nvcc flags.
      **kwargs: passed to the cc_library (visibility, linkopts, ...).
    """
    archive = "lib%s_cu.a" % name
    # -warn-spills with ptxas -Werror: a kernel that spills registers to local memory fails the
    # build (every kernel, every shipped architecture, in CI too).
    native.genrule(
        name = name + "_nvcc",
        srcs = srcs + hdrs,
        outs = [archive],
        cmd = " ".join([
            "/usr/local/cuda/bin/nvcc -std=c++17 -O3 -lineinfo -Xcompiler -fPIC",
            "-I. -I$(GENDIR) -Xptxas -warn-spills -Xptxas -Werror",
        ] + [_gencode_words(gencode)] + copts + [
            "-lib -o $@",
        ] + ["$(location %s)" % s for s in srcs]),
    )
    native.cc_library(
        name = name,
        srcs = [archive],
        hdrs = hdrs,
        deps = deps + ["@cuda//:cudart"],
        **kwargs
    )
