"""Shared by the benchmarks: run a measurement under a memory cap.

Every benchmark case runs in a child process of its own. On a machine without swap a
case that needs more memory than there is would wake the kernel's OOM killer, which may
pick another process. With the cap, the case fails with an ordinary allocation error
that the parent reports as "did not fit".
"""

from __future__ import annotations

import os
import resource


def limit_memory(max_gb: float = float("inf")) -> float:
    """Cap this process's address space at ``max_gb`` more than it holds now. The cap is
    also at most what the machine has available less 1 GiB. Returns the cap in GiB."""
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    available = int(info["MemAvailable"].split()[0]) * 1024
    with open("/proc/self/statm") as f:
        virtual = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    budget = int(min(max_gb * 2**30, available - 2**30))
    resource.setrlimit(resource.RLIMIT_AS, (virtual + budget, virtual + budget))
    return budget / 2**30
