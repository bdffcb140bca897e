"""What the numbers were measured on: the machine and the libraries, written into every
results file (a result without them cannot be compared or reproduced).

    machine()            CPU, its widest vector unit, cores, GPU (when torch is already loaded)
                         and operating system
    vector_unit()        "AMX", "AVX512-BF16", "AVX512", "AVX2" or None
    cpu_has_native_bf16()  whether the CPU multiplies bf16 itself (AMX or AVX512-BF16)
    library_versions()   Python and the installed version of each named package
    disk_size()          bytes of a file, or of a folder and everything in it
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path


def library_versions(*names: str) -> dict:
    # imported here, not at the top: ~45 ms that every --help would pay
    from importlib.metadata import PackageNotFoundError, version
    found = {"python": sys.version.split()[0]}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


# Widest first. The vector unit decides more than speed: fp32 matrix kernels for AVX2 and for
# AVX512 add in another order, so the same seeded run can word an answer differently on each
# (README, "Run it"), and bf16 is native only with AVX512-BF16 or AMX (emulated, ~100x slower, on
# AVX2).
VECTOR_UNITS = (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16"), ("avx512f", "AVX512"),
                ("avx2", "AVX2"))


def _cpuinfo() -> dict:
    """The first CPU's lines of /proc/cpuinfo ({} off Linux)."""
    try:
        first_cpu = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    except OSError:
        return {}
    return {key.strip(): value.strip() for key, value in
            (line.split(":", 1) for line in first_cpu.splitlines() if ":" in line)}


def vector_unit() -> str | None:
    """"AMX", "AVX512-BF16", "AVX512", "AVX2", or None (another CPU, or /proc does not say)."""
    flags = set(_cpuinfo().get("flags", "").split())
    return next((name for flag, name in VECTOR_UNITS if flag in flags), None)


def cpu_has_native_bf16() -> bool:
    return vector_unit() in ("AMX", "AVX512-BF16")


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = _cpuinfo().get("model name") or platform.processor() or platform.machine()
    gpu = None
    if "torch" in sys.modules:
        import torch
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "vector_unit": vector_unit(), "cores": os.cpu_count(), "gpu": gpu,
            "os": f"{platform.system()} {platform.release()}"}


def disk_size(path: str | Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
