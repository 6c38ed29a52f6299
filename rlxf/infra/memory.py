"""Peak memory of a piece of work, measured alone in a fresh Python process (so runs do not share a high-water mark).

CPU: the process's peak resident set size, which includes Python, torch and the model weights: Linux's `VmHWM`
(from /proc/self/status), else `ru_maxrss`. On Linux `ru_maxrss` survives fork + exec, so a child of a big process
(a notebook kernel holding a model) would report at least its parent's size; `VmHWM` belongs to the new program
alone. GPU: `torch.cuda.max_memory_allocated` (tensors only). Compare numbers only when both used the same measure.

    peak_memory("rlxf.selfplay:memory_probe", {"bots": 2, ...})  ->  {"peak_bytes": ..., "measure": "VmHWM", ...}

Inside such a process, `PhasePeak` gives the peak of one phase (e.g. training only) by the same measure.

`reuse_freed_memory()` keeps glibc from handing large freed blocks back to the kernel, so that a training loop's
tensors reuse memory that is already mapped instead of page-faulting fresh pages on every step.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib
import json
import os
import resource
import subprocess
import sys
import time

MARKER = "RLXF_PEAK_MEMORY "

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
MMAP_THRESHOLD_BYTES = 32 * 2**20  # glibc's largest: allocations below it come from the heap, freed ones are reused
TRIM_THRESHOLD_BYTES = 256 * 2**20  # free memory at the heap's top kept mapped before glibc returns it


@functools.cache
def reuse_freed_memory() -> bool:
    """Let glibc keep freed blocks of up to 32 MiB (and up to 256 MiB free at the top of its heap) for reuse ->
    whether it was set (Linux with glibc, once per process; elsewhere nothing changes).

    By default glibc serves a block above 128 KiB (the threshold grows to 32 MiB as such blocks are freed) with its
    own mmap and returns it on free, and it trims the heap's free top: the next step's tensor of the same size is new
    memory, and the kernel faults and zeroes each of its 4 KiB pages on first touch. Measured on the 2-core AMD EPYC
    (bf16, the PPO benchmark's SmolLM2-135M, 4 x 82 tokens): 13,000-54,000 page faults per PPO update and 13,825 per
    32-token generation; with this set, 1-3 per update from the fourth update on and none per generation; the PPO
    epochs took 1.47-1.62 s per update against 1.80-2.61 s, the peak RSS rose by 15 MB (1,806 vs 1,791 MB). The
    cost: up to 256 MiB of freed memory can stay resident. Called by rlxf's PPO, its CPU decode loop and
    `rlxf.lm.precision.training_precision`; set `RLXF_REUSE_FREED_MEMORY=0` to leave glibc's defaults alone.
    """
    if os.environ.get("RLXF_REUSE_FREED_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


def _rss_measure() -> str:
    return "VmHWM" if os.path.exists("/proc/self/status") else "ru_maxrss"


def _rss_bytes() -> int:
    """The peak resident set size of this process so far."""
    if _rss_measure() == "VmHWM":
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # macOS: bytes, elsewhere KiB


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def memory_measure(cuda: bool) -> str:
    """The name of the measure: "cuda_max_memory_allocated", else "VmHWM" (Linux) or "ru_maxrss"."""
    return "cuda_max_memory_allocated" if cuda else _rss_measure()


def _high_water_mark(cuda: bool) -> int:
    if cuda:
        import torch

        return int(torch.cuda.max_memory_allocated())
    return _rss_bytes()


# The kernel's (or CUDA's) high-water mark is per process, and PhasePeak resets it; this keeps the highest mark a
# reset wiped, so that the process's peak never reads lower than it was.
_WIPED_PEAK = {"cuda": 0, "rss": 0}


def process_peak_bytes(cuda: bool | None = None) -> int:
    """This process's peak memory so far, PhasePeak resets included (`cuda` None: CUDA if available, as peak_memory)."""
    cuda = _cuda_available() if cuda is None else cuda
    return max(_WIPED_PEAK["cuda" if cuda else "rss"], _high_water_mark(cuda))


class PhasePeak:
    """`with PhasePeak() as phase: ...` -> `phase.peak_bytes`: the peak memory inside the block (peak_memory's measure).

    Entering resets the high-water mark (Linux: "5" into /proc/self/clear_refs resets VmHWM; CUDA:
    `reset_peak_memory_stats`), so the phase's peak excludes what came before; `start_bytes` is the usage at entry.
    `process_peak_bytes` and `peak_memory` still report the whole process. Where the mark cannot be reset (no /proc),
    `reset` is False and `peak_bytes` is the process's peak up to the end of the block. Phases do not nest.
    """

    def __init__(self, cuda: bool | None = None):
        self.cuda = _cuda_available() if cuda is None else cuda
        self.measure = memory_measure(self.cuda)
        self.reset, self.start_bytes, self.peak_bytes = False, 0, 0

    def __enter__(self) -> PhasePeak:
        key = "cuda" if self.cuda else "rss"
        _WIPED_PEAK[key] = process_peak_bytes(self.cuda)
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
            self.reset = True
        elif self.measure == "VmHWM":
            try:
                with open("/proc/self/clear_refs", "w") as clear_refs:
                    clear_refs.write("5")
                self.reset = True
            except OSError:  # e.g. a kernel or sandbox that does not allow it
                self.reset = False
        self.start_bytes = _high_water_mark(self.cuda)  # right after a reset: the current usage
        return self

    def __exit__(self, *exc) -> None:
        self.peak_bytes = _high_water_mark(self.cuda)


def peak_memory(target: str, kwargs: dict | None = None, *, timeout: float | None = None,
                env: dict[str, str] | None = None) -> dict:
    """Run `module:function(**kwargs)` in a new process -> its peak memory and what the function returned.

    Returns `peak_bytes`, `measure` ("VmHWM", "ru_maxrss" or "cuda_max_memory_allocated"), `baseline_bytes` (the
    same measure just before the call: the imports, on CPU), `seconds` and `result` (the function's JSON-able return).
    `env` adds to (or overrides) the new process's environment variables.
    """
    if not isinstance(target, str) or target.count(":") != 1:
        raise ValueError(f"target must be 'module:function', got {target!r}")
    payload = json.dumps(kwargs or {})
    command = [sys.executable, "-m", "rlxf.infra.memory", target, payload]
    process = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, **(env or {})})
    lines = [line for line in process.stdout.splitlines() if line.startswith(MARKER)]
    if process.returncode != 0 or not lines:
        tail = (process.stderr or process.stdout).strip()[-2000:]
        raise RuntimeError(f"peak_memory({target}) failed with exit code {process.returncode}:\n{tail}")
    return json.loads(lines[-1][len(MARKER):])


def hold(megabytes: int) -> int:
    """Allocate and touch `megabytes` MiB, then free them -> the amount (a calibration target for `peak_memory`)."""
    if not isinstance(megabytes, int) or megabytes < 0:
        raise ValueError(f"megabytes must be an int >= 0, got {megabytes!r}")
    block = bytearray(megabytes * 2**20)
    block[:: 4096] = b"x" * len(block[:: 4096])  # touch every page so that it is resident
    del block
    return megabytes


def _measure(target: str, kwargs: dict) -> dict:
    import torch

    module_name, function_name = target.split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    baseline = process_peak_bytes(cuda)
    start = time.perf_counter()
    result = function(**kwargs)
    seconds = time.perf_counter() - start
    peak = process_peak_bytes(cuda)
    return {"target": target, "peak_bytes": int(peak), "baseline_bytes": int(baseline),
            "measure": memory_measure(cuda), "seconds": seconds, "result": result}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m rlxf.infra.memory module:function '{json kwargs}'")
    print(MARKER + json.dumps(_measure(sys.argv[1], json.loads(sys.argv[2]))), flush=True)
