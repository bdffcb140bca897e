"""What the numbers were measured on: the machine and the libraries, written into every
results file (a result without them cannot be compared or reproduced).

    machine()            CPU, cores, GPU (when torch is already loaded) and operating system
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


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = None
    if "torch" in sys.modules:
        import torch
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu,
            "os": f"{platform.system()} {platform.release()}"}


def disk_size(path: str | Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
