"""Side-by-side writes under an interrupt: the running ones finish before Ctrl-C goes on, the rest never start."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from lakehouse.spark_threads import run_side_by_side


@pytest.fixture
def interrupted():
    """An event set when the main thread takes a SIGINT, which then raises KeyboardInterrupt as Python's own handler
    does (a SparkContext of the test process installs one that cancels its jobs first)."""
    taken = threading.Event()

    def handler(signum, frame):
        taken.set()
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGINT, handler)
    yield taken
    signal.signal(signal.SIGINT, before)


def test_an_interrupt_lets_the_running_task_finish_and_the_ones_not_started_never_start(interrupted):
    started, done = threading.Event(), []

    def running() -> None:
        started.set()
        assert interrupted.wait(30)  # the interrupt is taken while this task runs, however loaded the machine
        time.sleep(1)
        done.append("running")

    def interrupt() -> None:
        started.wait()
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    sender = threading.Thread(target=interrupt)
    sender.start()
    with pytest.raises(KeyboardInterrupt):  # while submitting the second task, or waiting: either way the same
        run_side_by_side([running, lambda: done.append("not started")], at_once=1)
    sender.join()
    assert done == ["running"]  # finished before the interrupt went on (a forget's tag is still set then)
    time.sleep(0.3)
    assert done == ["running"]  # and the task that had not started never does


def test_the_first_error_is_raised_after_every_task_ran():
    done = []

    def fails() -> None:
        raise ValueError("first")

    with pytest.raises(ValueError, match="first"):
        run_side_by_side([fails, lambda: done.append(1)], at_once=1)
    assert done == [1]
    assert run_side_by_side([lambda: 1, lambda: 2]) == [1, 2]
