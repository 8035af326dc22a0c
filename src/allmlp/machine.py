"""Facts about the processor this process runs on: its name, its physical cores, the torch threads a run gets."""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path

SYS_CPU = Path("/sys/devices/system/cpu")
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def cpu_model() -> str:
    """The processor's name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")  # what decides bf16's speed on x86 CPUs


def bf16_features() -> list[str]:
    """Which of BF16_FLAGS /proc/cpuinfo lists (a virtual machine's model name, "Intel Xeon Processor", does not
    tell a Xeon with AMX from one without)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return [flag for flag in BF16_FLAGS if flag in flags]
    except OSError:
        pass
    return []


def _usable_cpus() -> list[int]:
    """The logical CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _cgroup_cpu_limit(path: Path = CGROUP_CPU_MAX) -> int | None:
    """CPUs a cgroup v2 quota allows (`cpu.max` "quota period"), rounded up; None without a quota."""
    try:
        quota, period = path.read_text().split()[:2]
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):  # no file, "max" (no quota), or not two numbers
        return None


def physical_cores(sys_cpu: Path = SYS_CPU, cgroup_cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """Physical cores this process may use: distinct (package, core) pairs among its usable CPUs, capped by a
    container's CPU quota; hyper-threads share a core's matrix units, so they do not count."""
    cpus = _usable_cpus()
    cores = set()
    for cpu in cpus:
        topology = sys_cpu / f"cpu{cpu}" / "topology"
        try:
            package = (topology / "physical_package_id").read_text().strip()
            cores.add((package, (topology / "core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))  # no topology: count the logical CPU as a core
    limit = _cgroup_cpu_limit(cgroup_cpu_max)
    return max(1, min(len(cores), limit) if limit else len(cores))


def local_processes(devices: int) -> int:
    """Training processes on this machine: torchrun's LOCAL_WORLD_SIZE, else one per configured device."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "")))
    except ValueError:
        return max(1, devices)


def torch_threads(threads: int, devices: int = 1) -> tuple[int, str]:
    """(intra-op threads, why) for `train.threads`: a positive value as given; 0 means OMP_NUM_THREADS when it is
    set (sweeps and tests set it for their processes), else the physical cores shared out over this machine's
    training processes."""
    if threads > 0:
        return threads, "train.threads"
    try:
        from_env = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        from_env = 0
    if from_env > 0:
        return from_env, "OMP_NUM_THREADS"
    cores, processes = physical_cores(), local_processes(devices)
    if processes == 1:
        return cores, f"one per physical core, {cores} cores"
    return max(1, cores // processes), f"{cores} physical cores / {processes} processes"
