"""One process-wide line for heavy work (model forwards, kernel benchmarks).

A classroom opens the same server at once: heavy requests wait their turn in FIFO order,
`workers` at a time, and each waiting caller can see its place in the line and give up.
A caller whose session ends (Streamlit stops its thread by raising inside its next call)
leaves the line through the `finally` of `JobQueue.slot`, so an abandoned job never
blocks the others.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

from .limits import OTHER_LOAD_FOR_ONE_THREAD


class Cancelled(Exception):
    """The caller gave up while waiting in line."""


@dataclass
class JobQueue:
    workers: int = 1
    _cond: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _line: list = field(default_factory=list, repr=False)  # tickets waiting, first in line first
    _running: set = field(default_factory=set, repr=False)
    _tickets: itertools.count = field(default_factory=itertools.count, repr=False)
    max_running_seen: int = 0  # for tests and the load test: never above `workers`
    completed: int = 0

    def __post_init__(self):
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"A job queue needs at least 1 worker, got {self.workers!r}.")

    def position(self, ticket: int) -> int:
        """0 while the ticket runs, k ≥ 1 while it is k-th in line, -1 when unknown."""
        with self._cond:
            if ticket in self._running:
                return 0
            return self._line.index(ticket) + 1 if ticket in self._line else -1

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._line)

    @property
    def running(self) -> int:
        with self._cond:
            return len(self._running)

    @contextmanager
    def slot(self, on_wait: Callable[[int], None] | None = None,
             cancelled: Callable[[], bool] | None = None, poll_s: float = 0.25, timeout_s: float | None = None):
        """Wait for a free worker (FIFO), then hold it for the `with` body.

        on_wait(position) is called while waiting (1 = next); cancelled() → True leaves the line
        and raises Cancelled; so does waiting longer than timeout_s."""
        ticket = next(self._tickets)
        start = time.monotonic()
        with self._cond:
            self._line.append(ticket)
        try:
            while True:
                with self._cond:
                    first_free = len(self._running) < self.workers and self._line[0] == ticket
                    if first_free:
                        self._line.pop(0)
                        self._running.add(ticket)
                        self.max_running_seen = max(self.max_running_seen, len(self._running))
                        break
                    pos = self._line.index(ticket) + 1
                if cancelled is not None and cancelled():
                    raise Cancelled("You left the line.")
                if timeout_s is not None and time.monotonic() - start > timeout_s:
                    raise Cancelled(f"Still waiting after {timeout_s:.0f} s; the server is busy, try again later.")
                if on_wait is not None:
                    on_wait(pos)
                with self._cond:
                    self._cond.wait(poll_s)
            yield ticket
        finally:
            with self._cond:
                if ticket in self._line:
                    self._line.remove(ticket)
                if ticket in self._running:
                    self._running.discard(ticket)
                    self.completed += 1
                self._cond.notify_all()


def deadline(progress: Callable, limit_s: float, clock: Callable[[], float] = time.monotonic) -> Callable:
    """Wrap a progress callback of multi-step work (a sweep, a probe) so that the work stops with
    Cancelled at its next step once it has run longer than limit_s. One forward pass cannot be cut
    short, so single-step work is bounded by the input limits instead (attn/limits.py)."""
    start = clock()

    def check(*args, **kwargs):
        elapsed = clock() - start
        if elapsed > limit_s:
            raise Cancelled(f"Stopped after {elapsed:.0f} s: one request may run for at most {limit_s:.0f} s. "
                            "Choose fewer windows, sizes or trials.")
        return progress(*args, **kwargs)

    return check


def proc_stat(pid: int | str = "self") -> list[str]:
    """The fields of /proc/<pid>/stat after the command name: [0] state, [1] parent pid,
    [11] user and [12] system CPU ticks. Raises OSError for a process that has gone."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_ticks(pid: int | str = "self") -> int:
    """User + system CPU ticks of one process (os.sysconf("SC_CLK_TCK") per second)."""
    fields = proc_stat(pid)
    return int(fields[11]) + int(fields[12])


def _cpu_ticks() -> tuple[int, int]:
    """(busy ticks of the whole machine, ticks of this process) from /proc."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # minus idle and iowait
    return busy, cpu_ticks()


def other_cpu_load(sample_s: float = 0.1) -> float | None:
    """Cores kept busy by other processes over a short sample (None where /proc cannot tell)."""
    try:
        busy0, own0 = _cpu_ticks()
        time.sleep(sample_s)
        busy1, own1 = _cpu_ticks()
    except (OSError, ValueError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return max(0.0, ((busy1 - busy0) - (own1 - own0)) / tick / sample_s)


def threads_for_job(cores: int, workers: int, waiting: int, other_load: float | None) -> int:
    """Torch threads for the next CPU job. All cores when the machine is otherwise idle; one when
    anything else competes (other jobs, people waiting, other processes): an op split over threads
    waits for its slowest thread, and a thread that loses its core makes the op 5-10x slower.
    Measured on 2 cores, SmolLM2 at 256 tokens: 0.55 s with 2 threads idle, 9-11 s with 2 threads
    while another process kept one core busy, 1.0 s with 1 thread either way."""
    if workers > 1 or waiting > 0 or other_load is None or other_load > OTHER_LOAD_FOR_ONE_THREAD:
        return 1
    return max(1, cores)


def job_log_line(name: str, waited_s: float, ran_s: float, threads: int | None, waiting: int, at_epoch: float) -> str:
    """The server log's line for one finished job (read back by attn.loadtest.server_jobs)."""
    return (f"attn job: {name} waited {waited_s:.3f} s, ran {ran_s:.3f} s, {threads or 'default'} threads, "
            f"{waiting} waiting, at {at_epoch:.3f}")
