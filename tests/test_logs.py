"""The commands' log lines follow standard output, even after the stream they started with is closed."""

from __future__ import annotations

import io
import logging

from lakehouse.logs import log_to_stdout


def test_a_line_logged_after_the_first_stdout_is_closed_goes_to_the_current_one(monkeypatch, capsys) -> None:
    # What a streaming query's batch thread did after a CLI test's captured output was closed: every
    # later batch's metrics line failed with "I/O operation on closed file" and the query stopped.
    first = io.StringIO()
    monkeypatch.setattr("sys.stdout", first)
    log_to_stdout("INFO")
    logging.getLogger("lakehouse.metrics").info('{"event": "batch", "batch_id": 0}')
    first.close()

    later = io.StringIO()
    monkeypatch.setattr("sys.stdout", later)
    logging.getLogger("lakehouse.metrics").info('{"event": "batch", "batch_id": 1}')

    assert later.getvalue() == '{"event": "batch", "batch_id": 1}\n'
    assert "Logging error" not in capsys.readouterr().err


def test_debug_lines_are_dropped_at_info_and_shown_at_debug(monkeypatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    log_to_stdout("INFO")
    logging.getLogger("lakehouse.batch").debug("plan")
    log_to_stdout("DEBUG")
    logging.getLogger("lakehouse.batch").debug("plan shown")
    assert out.getvalue() == "plan shown\n"
