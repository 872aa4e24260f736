"""Measuring helpers shared by the benchmarks: load average, per-process RSS, child processes with rusage,
and the preamble of a benchmark run on its own (its argument parser, its scratch folder, its JSON lines).

Every figure a benchmark prints carries the load average seen while it was measured, because the
machine is shared: a figure is only comparable to the baseline measured beside it in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[1]


def rss_mb(pid: int, field_name: str = "VmRSS") -> float | None:
    """``VmRSS`` (now) or ``VmHWM`` (peak since start) of a live process in MB; None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field_name + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants (importer workers are children of the importing process)."""
    out = [pid]
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for kid in kids:
        out.extend(tree_pids(int(kid)))
    return out


@dataclass
class Sampler:
    """Samples the 1-minute load average and the RSS of named processes in a background thread.

    Args:
        pids: Name → pid (or a callable giving the pid, for a process started later).
        every_s: Sampling interval.
    """

    pids: dict[str, int | Callable[[], int | None]] = field(default_factory=dict)
    every_s: float = 0.2
    load: list[float] = field(default_factory=list)
    rss: dict[str, float] = field(default_factory=dict)
    hwm: dict[str, dict[int, float]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self) -> None:
        self.load.append(os.getloadavg()[0])
        for name, ref in self.pids.items():
            pid = ref() if callable(ref) else ref
            if pid is None:
                continue
            total = 0.0
            peaks = self.hwm.setdefault(name, {})
            for p in tree_pids(pid):
                total += rss_mb(p) or 0.0
                peak = rss_mb(p, "VmHWM")
                if peak is not None:
                    peaks[p] = max(peaks.get(p, 0.0), peak)
            if total:
                self.rss[name] = max(self.rss.get(name, 0.0), round(total, 1))

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self._sample()

    def __enter__(self) -> Sampler:
        self._sample()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    def load_avg(self) -> dict[str, float]:
        """The 1-minute load average at the start, its maximum and at the end of the measurement."""
        return {"start": round(self.load[0], 2), "max": round(max(self.load), 2), "end": round(self.load[-1], 2)}

    def rss_max_mb(self) -> dict[str, float]:
        """Largest sampled RSS of each named process (its whole process tree at one instant), MB."""
        return dict(self.rss)

    def peak_mb(self, name: str) -> float | None:
        """Sum of the peak RSS (``VmHWM``) of every process seen in the named tree, MB: an upper bound.

        ``VmHWM`` is the process's own peak since it started its program; ``wait4``'s ``ru_maxrss``
        is not used because Linux carries the parent's RSS at fork into it.
        """
        peaks = self.hwm.get(name)
        return round(sum(peaks.values()), 1) if peaks else None


@contextmanager
def sampled(**pids: int | Callable[[], int | None]) -> Iterator[Sampler]:
    """``with sampled(agent=pid) as s:`` — load average and RSS while the block runs."""
    s = Sampler(dict(pids))
    with s:
        yield s


@dataclass
class ChildResult:
    """What one child process did: exit code, stdout, wall seconds, CPU seconds and peak RSS."""

    returncode: int
    stdout: bytes
    seconds: float
    cpu_s: float
    max_rss_mb: float


def run_child_rusage(argv: Sequence[str]) -> ChildResult:
    """Run a child to the end: wall time, its own CPU time (``wait4``) and its peak RSS (sampled ``VmHWM``)."""
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    with sampled(child=proc.pid) as s:
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - t0
    return ChildResult(proc.returncode, out, seconds, usage.ru_utime + usage.ru_stime, s.peak_mb("child") or 0.0)


def python(module: str, *args: str) -> list[str]:
    """argv for ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def figure(bench: str, **fields: Any) -> dict[str, Any]:
    """A figure dict with ``bench`` first (JSON lines read better that way)."""
    return {"bench": bench, **fields}


def parser(doc: str | None) -> argparse.ArgumentParser:
    """The argument parser of a benchmark script: its module docstring, as written, is the ``--help`` text."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


@contextmanager
def scratch(prefix: str, *, keep: bool = False) -> Iterator[Path]:
    """A fresh temporary folder for one benchmark run, removed afterwards unless ``keep``."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield root
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def print_figure(figure: dict[str, Any]) -> None:
    """One figure as a JSON line on stdout, flushed (for tools reading a run as it goes)."""
    print(json.dumps(figure), flush=True)
