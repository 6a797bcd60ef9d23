"""The process-wide job line: serialises heavy work, FIFO, cancellation and failures free the slot."""

import threading
import time

import pytest

from attn.jobs import Cancelled, JobQueue


def run_threads(queue, count, body_s=0.05, log=None):
    active = [0]
    overlap = [0]
    lock = threading.Lock()

    def job(i):
        with queue.slot(poll_s=0.01):
            with lock:
                active[0] += 1
                overlap[0] = max(overlap[0], active[0])
                if log is not None:
                    log.append(i)
            time.sleep(body_s)
            with lock:
                active[0] -= 1

    threads = []
    for i in range(count):
        t = threading.Thread(target=job, args=(i,))
        t.start()
        threads.append(t)
        time.sleep(0.005)  # start in a known order
    for t in threads:
        t.join(10)
    return overlap[0]


def test_one_worker_never_overlaps_and_keeps_order():
    q = JobQueue(1)
    order = []
    assert run_threads(q, 8, log=order) == 1
    assert order == sorted(order)  # first come, first served
    assert q.max_running_seen == 1 and q.completed == 8 and q.waiting == 0 and q.running == 0


def test_two_workers_run_two_at_a_time():
    q = JobQueue(2)
    assert run_threads(q, 6, body_s=0.1) == 2


def test_position_is_reported_and_cancel_frees_the_place():
    q = JobQueue(1)
    release = threading.Event()
    seen = []
    started = threading.Event()

    def holder():
        with q.slot(poll_s=0.01):
            started.set()
            release.wait(5)

    t = threading.Thread(target=holder)
    t.start()
    started.wait(5)
    give_up = threading.Event()

    def waiter():
        try:
            with q.slot(on_wait=seen.append, cancelled=give_up.is_set, poll_s=0.01):
                seen.append("ran")
        except Cancelled:
            seen.append("cancelled")

    w = threading.Thread(target=waiter)
    w.start()
    time.sleep(0.1)
    assert q.waiting == 1 and 1 in seen  # told "1st in line"
    give_up.set()
    w.join(5)
    assert seen[-1] == "cancelled" and q.waiting == 0
    release.set()
    t.join(5)
    with q.slot(poll_s=0.01):  # the line is free again
        assert q.running == 1


def test_a_failing_job_frees_its_slot_and_timeouts_leave_the_line():
    q = JobQueue(1)
    with pytest.raises(RuntimeError):
        with q.slot():
            raise RuntimeError("boom")
    assert q.running == 0
    hold = threading.Event()
    with q.slot():
        def late():
            with pytest.raises(Cancelled):
                with q.slot(timeout_s=0.05, poll_s=0.01):
                    pass
            hold.set()
        t = threading.Thread(target=late)
        t.start()
        t.join(5)
    assert hold.is_set() and q.waiting == 0
    with pytest.raises(ValueError):
        JobQueue(0)


def test_deadline_stops_multi_step_work_after_the_limit():
    from attn.jobs import deadline

    now = [0.0]
    seen = []
    check = deadline(lambda *a: seen.append(a), 10.0, clock=lambda: now[0])
    check(0, 3, "first")
    now[0] = 9.9
    check(1, 3, "second")
    now[0] = 10.5
    with pytest.raises(Cancelled, match="at most 10 s"):
        check(2, 3, "third")
    assert seen == [(0, 3, "first"), (1, 3, "second")]


def test_threads_for_job_uses_every_core_only_on_an_idle_machine():
    from attn.jobs import threads_for_job

    assert threads_for_job(cores=2, workers=1, waiting=0, other_load=0.0) == 2
    assert threads_for_job(cores=2, workers=1, waiting=0, other_load=0.29) == 2
    assert threads_for_job(cores=2, workers=1, waiting=0, other_load=0.8) == 1  # another process competes
    assert threads_for_job(cores=2, workers=1, waiting=3, other_load=0.0) == 1  # people are waiting
    assert threads_for_job(cores=8, workers=2, waiting=0, other_load=0.0) == 1  # two jobs share the cores
    assert threads_for_job(cores=2, workers=1, waiting=0, other_load=None) == 1  # cannot tell: be safe


def test_other_cpu_load_sees_a_busy_process():
    import subprocess
    import sys

    from attn.jobs import other_cpu_load

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert other_cpu_load(0.5) >= 0.5  # the spinning child keeps about one core busy
    finally:
        busy.kill()
        busy.wait()
