"""The fused CPU operations of `decode_ops.cpp` (the decode step's, and the PPO update's: `rlxf.lm.kernels`,
`rlxf.lm.logprobs.target_logprobs`), compiled on first use as a PyTorch C++ extension.

`ops()` builds the extension once per machine (about 20 s on the 2-core AMD EPYC; g++ and ninja, with OpenMP where the
compiler has it, cached under torch's extensions directory, named by a hash of the source, the torch version, the CPU
and the flags, so that a cache shared between machines never loads code built for another CPU) and returns its
module, or None where it cannot be built (no compiler, a build error: a warning says why) or `RLXF_FUSED_DECODE=0`
switches it off. `rlxf.lm.decode` falls back to PyTorch operations when it is None, and so do the training kernels.
"""

from __future__ import annotations

import functools
import hashlib
import os
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("decode_ops.cpp")


def enabled() -> bool:
    """Whether the fused operations are wanted (`RLXF_FUSED_DECODE`, default on)."""
    return os.environ.get("RLXF_FUSED_DECODE", "1") != "0"


def _cpu_fingerprint() -> str:
    """The CPU's model and instruction-set flags (the build uses -march=native)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        import platform

        return platform.processor() + platform.machine()
    keep = [line for line in lines if line.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(keep)))


# -fno-trapping-math and -fno-math-errno let loops with comparisons and exp vectorise; neither reorders arithmetic
FLAGS = ["-O3", "-march=native", "-fno-trapping-math", "-fno-math-errno"]
# at::parallel_for is a header template that runs its loop on one thread unless the extension itself is compiled with
# OpenMP (ATen/ParallelOpenMP.h: `#ifdef _OPENMP`); linked with -fopenmp it shares torch's libgomp (same soname) and
# its thread count. Until this flag the training kernels ran on one thread of two (log-probabilities forward 6.4 ms
# against 3.8 on the 2-core AMD EPYC). A compiler without OpenMP builds them without it.
OPENMP = ["-fopenmp"]


def _load(flags: list[str], ldflags: list[str]):
    from torch.utils.cpp_extension import load

    source = SOURCE.read_text()
    digest = hashlib.sha1("\n".join((source, torch.__version__, _cpu_fingerprint(), *flags)).encode()).hexdigest()
    return load(name=f"rlxf_decode_ops_{digest[:12]}", sources=[str(SOURCE)], extra_cflags=flags,
                extra_ldflags=ldflags, verbose=False)


def _build():
    """The extension with OpenMP, or without it where that build fails (`rlxf_openmp` says which)."""
    try:
        module, openmp = _load(FLAGS + OPENMP, OPENMP), True
    except Exception:  # noqa: BLE001 - no OpenMP here: the same operations, each on one thread
        module, openmp = _load(FLAGS, []), False
    module.rlxf_openmp = openmp
    return module


@functools.cache
def _module():
    try:
        return _build()
    except Exception as error:  # noqa: BLE001 - any build failure means: decode without them
        warnings.warn(f"rlxf.lm.fused: the fused decode operations could not be built ({type(error).__name__}: "
                      f"{str(error)[:300]}); decoding uses PyTorch operations (slower per step)", RuntimeWarning,
                      stacklevel=3)
        return None


def ops():
    """The compiled module (its operations are the `m.def` lines of decode_ops.cpp), or None (see above)."""
    return _module() if enabled() else None
