"""tests/helpers.py: the free ports and the polling wait the other tests rely on (fast, no Ray)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import free_port, free_ports, port_block, wait_until


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_port_block_per_xdist_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    assert port_block() == 0
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    assert port_block() == 3000
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "master")
    assert port_block() == 0


def test_free_ports_in_a_fixed_range_are_in_the_workers_block_and_never_handed_out_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    ports = range(47000, 47100)
    taken = free_ports(3, ports)
    assert len(set(taken)) == 3 and all(48000 <= p < 48100 for p in taken)
    one = free_port(ports)
    assert 48000 <= one < 48100 and one not in taken, "a port handed out earlier is skipped (its server may not listen yet)"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.delenv("PYTEST_XDIST_WORKER")
        # one port out of the next 63: the ports right after an ephemeral one may be taken by other tests' servers
        assert port not in free_ports(1, range(port, port + 64)), "a port something listens on is skipped"
    with pytest.raises(RuntimeError, match="fewer than 200 free ports"):
        free_ports(200, range(47200, 47300))


def test_wait_until_returns_the_first_truthy_value() -> None:
    calls = iter([0, None, "", ["ready"]])
    assert wait_until(lambda: next(calls), 5, what="a list", interval_s=0.01) == ["ready"]


def test_wait_until_counts_an_exception_as_not_yet() -> None:
    attempts = {"n": 0}

    def flaky() -> int:
        attempts["n"] += 1
        if attempts["n"] < 3:
            raise ConnectionError("refused")
        return attempts["n"]

    assert wait_until(flaky, 5, interval_s=0.01) == 3


def test_wait_until_timeout_says_what_and_the_last_value_or_exception(tmp_path: Path) -> None:
    done: list[str] = []
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"timed out after 0.2 s waiting for 5 finished trials; last value \[\]"):
        wait_until(lambda: done if len(done) >= 5 else [], 0.2, what="5 finished trials", interval_s=0.05)
    assert time.monotonic() - started < 5

    def refused() -> bool:
        raise ConnectionRefusedError("port 1")

    log = tmp_path / "server.log"
    log.write_text("starting\nstill starting\n")
    with pytest.raises(AssertionError) as err:
        wait_until(refused, 0.1, what="the server", interval_s=0.02, log=log, context=lambda: "3 requests sent")
    text = str(err.value)
    assert "waiting for the server; last exception ConnectionRefusedError('port 1')" in text
    assert "still starting" in text and "3 requests sent" in text


def test_wait_until_stops_at_an_assertion_from_the_condition() -> None:
    calls = {"n": 0}

    def broken() -> bool:
        calls["n"] += 1
        raise AssertionError("the job failed")

    with pytest.raises(AssertionError, match="the job failed"):
        wait_until(broken, 30, interval_s=0.01)
    assert calls["n"] == 1


def test_wait_until_fails_at_once_when_its_process_exits() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "print('bye'); raise SystemExit(3)"], stdout=subprocess.PIPE, text=True)
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"(?s)process exited \(3\) while waiting for the server.*bye"):
        wait_until(lambda: False, 60, what="the server", interval_s=0.05, proc=proc)
    assert time.monotonic() - started < 30
