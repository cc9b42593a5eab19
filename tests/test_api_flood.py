"""The HTTP API under a flood of connections nobody authenticated: the token holder's /status
keeps answering, the run finishes with its results file, stderr stays small; every error answer
carries the security headers. Waits poll real progress, bounded; nothing measures the clock."""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from anvil_cli.views.api.guard import ConnectionGate, ErrorTally, connection_cap
from anvil_cli.views.api.server import ApiServer
from anvil_cli.views.web import SECURITY_HEADERS
from tests.engine_support import anvil_cmd, cli_env, read_results, write_config, write_jsonl_batch
from tests.test_api_e2e import TOKEN, Api, free_port, wait_for
from tests.test_api_server import TOKEN as SERVER_TOKEN
from tests.test_api_server import Broken, FakeController, call

N_JOBS = 120
IDLE = 1500  # connections that never send a byte
LORIS = 30  # connections that send half a request head, then a byte now and then
GARBAGE = 30  # requests aiohttp cannot parse
CHILD_NOFILE = 1024  # the run's hard open-file limit: 1,500 connections would exhaust it
MAX_STDERR_BYTES = 64 * 1024


def raw_exchange(port: int, data: bytes, timeout_s: float = 10.0) -> bytes:
    """Send `data` on a new connection; everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def head_of(raw: bytes) -> tuple[int, dict[str, str]]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in head[1:])
    return int(head[0].split()[1]), {k.title(): v for k, v in headers.items()}


def assert_secure(headers: dict[str, str]) -> None:
    titled = {k.title(): v for k, v in headers.items()}
    for name, value in SECURITY_HEADERS.items():
        assert titled.get(name.title()) == value, (name, titled)
    assert titled.get("Cache-Control") == "no-store"


# -- every error answer carries the security headers ----------------------------------------


@pytest.fixture
def server() -> Iterator[ApiServer]:
    with ApiServer(FakeController(), "127.0.0.1", 0, SERVER_TOKEN, idle_timeout_s=2.0).start() as srv:
        yield srv


def test_security_headers_on_every_error_kind(server: ApiServer) -> None:
    status, headers, _ = call(server, "GET", "/nowhere")
    assert status == 404
    assert_secure(headers)
    status, headers, _ = call(server, "GET", "/pause")
    assert status == 405
    assert_secure(headers)
    status, headers, _ = call(server, "GET", "/status", token="wrong-token-0123456789")
    assert status == 401
    assert_secure(headers)
    status, headers, _ = call(server, "POST", "/jobs", raw=b"x" * (17 * 1024 * 1024))
    assert status == 413
    assert_secure(headers)
    with ApiServer(Broken(), "127.0.0.1", 0, SERVER_TOKEN).start() as broken:
        status, headers, _ = call(broken, "GET", "/status")
    assert status == 500
    assert_secure(headers)


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nthis is no header\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n",
        b"GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
    ],
)
def test_aiohttps_own_bad_request_answer_is_json_with_the_headers(server: ApiServer, garbage: bytes) -> None:
    raw = raw_exchange(server.port, garbage)
    status, headers = head_of(raw)
    assert status == 400
    assert_secure(headers)
    assert json.loads(raw.split(b"\r\n\r\n", 1)[1])["error"].startswith("400 Bad Request")
    assert SERVER_TOKEN.encode() not in raw


def test_half_sent_request_head_is_closed_when_idle(server: ApiServer) -> None:
    """A slow loris: the server closes the connection (recv sees EOF), it does not wait forever."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
        assert sock.recv(1024) == b""  # closed by the server, with nothing answered


# -- the gate and the tally, without a network ------------------------------------------------


class FakeConnection:
    def __init__(self) -> None:
        self.closed = False

    def force_close(self) -> None:
        self.closed = True


def test_gate_closes_the_oldest_idle_connection_to_admit_a_new_one() -> None:
    gate = ConnectionGate(cap=3)
    conns = [FakeConnection() for _ in range(5)]
    assert all(gate.admit(c) for c in conns[:3])  # type: ignore[arg-type]
    gate._busy[conns[0]] = 1  # type: ignore[index]  # handling a request: not to be evicted
    assert gate.admit(conns[3])  # type: ignore[arg-type]
    assert [c.closed for c in conns[:3]] == [False, True, False]
    gate._busy[conns[2]] = 1  # type: ignore[index]
    gate._busy[conns[3]] = 1  # type: ignore[index]
    assert not gate.admit(conns[4])  # type: ignore[arg-type]  # every one busy: the new one goes
    assert (gate.evicted, gate.refused) == (1, 1)
    gate.lost(conns[0])  # type: ignore[arg-type]
    assert gate.admit(conns[4])  # type: ignore[arg-type]


def test_connection_cap_leaves_the_run_its_descriptors() -> None:
    assert connection_cap(1024) == 384
    assert connection_cap(1 << 20) == 512
    assert connection_cap(64) == 16


def test_tally_counts_everything_and_prints_at_most_a_line_a_minute() -> None:
    lines: list[str] = []
    now = [100.0]
    tally = ErrorTally(lines.append, clock=lambda: now[0])
    for _ in range(1000):
        tally.record("BadHttpMessage")
    assert tally.total == 1000 and len(lines) == 1
    now[0] += 59.0
    tally.record("OSError")
    assert len(lines) == 1
    now[0] += 1.0
    tally.record("OSError")
    assert len(lines) == 2 and "1000" not in lines[1] and "OSError x2" in lines[1]
    tally.record("ConnectionResetError")
    tally.flush()
    assert len(lines) == 3 and "ConnectionResetError x1" in lines[2]
    assert tally.total == 1003


# -- a real run, flooded ------------------------------------------------------------------------


def _child_limits() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (CHILD_NOFILE // 4, CHILD_NOFILE))  # as a default shell


def _nofile_soft(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-file limit in /proc")


@contextlib.contextmanager
def _own_nofile(needed: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the flood needs {needed} open files; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _open_flood(port: int) -> list[socket.socket]:
    socks: list[socket.socket] = []
    for _ in range(IDLE):  # the server closes most of them (the oldest idle make room): fine
        with contextlib.suppress(OSError):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    for i in range(LORIS):
        with contextlib.suppress(OSError):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(f"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow-{i}: ".encode())
            socks.append(sock)
    for i in range(GARBAGE):
        with contextlib.suppress(OSError):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(f"GET /x{i} HTTP/1.1\r\n{'no colon here' * 3}\r\n\r\n".encode())
            socks.append(sock)
    return socks


def _dribble(socks: list[socket.socket]) -> None:
    """The slow lorises send one more byte each (those still open)."""
    for sock in socks[-(LORIS + GARBAGE) : -GARBAGE]:
        with contextlib.suppress(OSError):
            sock.sendall(b"a")


def _metric(api: Api, name: str) -> float:
    code, text = api.get("/metrics")
    assert code == 200
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not in /metrics")


@pytest.mark.slow
def test_a_flood_of_unauthenticated_connections_leaves_the_run_and_its_api_standing(tmp_path: Path) -> None:
    with (
        _own_nofile(IDLE + LORIS + GARBAGE + 256),
        SimServer(SimConfig(latency_ms=100, seed=5)).start_thread() as sim,
    ):
        batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(N_JOBS)])
        scaling = {"workers": 1, "max_agents": 4, "max_concurrent_jobs": 4, "min_agents": 1}
        config = write_config(tmp_path / "anvil.yaml", sim.base_url, scaling=scaling)
        out, port = tmp_path / "out.jsonl", free_port()
        serve = ("--serve", f"127.0.0.1:{port}")
        cmd = anvil_cmd("run", str(batch), "--config", str(config), "-o", str(out), *serve)
        err_path = tmp_path / "run.stderr"
        with err_path.open("w") as err:
            proc = subprocess.Popen(
                cmd,
                cwd=tmp_path,
                env={**cli_env(), "ANVIL_API_TOKEN": TOKEN},
                stdout=subprocess.DEVNULL,
                stderr=err,
                preexec_fn=_child_limits,  # only setrlimit, before exec
            )
        api = Api(f"http://127.0.0.1:{port}")
        socks: list[socket.socket] = []
        try:
            wait_for(lambda: api.up() or proc.poll() is not None, what="the API answering")
            assert _nofile_soft(proc.pid) == CHILD_NOFILE  # the conductor raised its own, soft to hard
            assert api.post("/pause")[0] == 200  # the flood lands mid-run, whatever the pace
            socks = _open_flood(port)
            for _ in range(5):  # the token holder, between rounds of the flood
                _dribble(socks)
                status = api.status()
                assert status["counts"]["total"] == N_JOBS
            assert _metric(api, "anvil_api_connection_errors_total") >= 1  # the garbage, counted
            socks += _open_flood(port)  # a second wave while the run goes on
            assert api.post("/resume")[0] == 200
            assert api.status()["counts"]["total"] == N_JOBS
            code = proc.wait(timeout=120)
        finally:
            for sock in socks:
                sock.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stderr = err_path.read_bytes()
        assert code == ExitCode.OK, stderr[-4000:].decode(errors="replace")
        assert len(stderr) < MAX_STDERR_BYTES, len(stderr)
        assert b"Traceback" not in stderr and b"Too many open files" not in stderr
        results = read_results(out)
        assert [r["id"] for r in results] == [f"job-{i:04d}" for i in range(N_JOBS)]
        assert all(r["status"] == "succeeded" for r in results)
