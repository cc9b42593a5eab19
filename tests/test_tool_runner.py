"""The asyncio tool runner, on real subprocesses: results, limits, and no process left behind.

Tests wait on completion: a tool reports its pids through a FIFO, and a process is known dead
when its pidfd turns readable. Timeouts passed here are hang guards, never measurements."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import select
import signal
import sys
import time
import tracemalloc
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest

from anvil_cli.engine.worker.tools.limits import rlimit_plan
from anvil_cli.engine.worker.tools.outcome import Capture
from anvil_cli.engine.worker.tools.runner import ToolLimits, ToolOutcome, ToolProcesses, run_tool_async
from anvil_cli.jobs.toolspec import scrubbed_env

T = TypeVar("T")
Run = Callable[[Coroutine[Any, Any, T]], T]
GUARD_S = 30.0  # hang guard for anything a test waits on
SPAWNER = 'sleep 300 & echo "$$ $!" > "$1"; wait'  # writes "<tool pid> <grandchild pid>"
INF = resource.RLIM_INFINITY


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run[Any]:
    """Runs a coroutine on a fresh loop: the default one, and uvloop when it is installed."""
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    if request.param == "uvloop":
        factory = pytest.importorskip("uvloop").new_event_loop

    def run(coro: Coroutine[Any, Any, T]) -> T:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro)

    return run


async def call(
    argv: list[str],
    tool_input: Any = None,
    *,
    timeout_s: float = GUARD_S,
    limits: ToolLimits | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    processes: ToolProcesses | None = None,
) -> dict[str, Any]:
    """The call's tool_result block."""
    done = await outcome(
        argv, tool_input, timeout_s=timeout_s, limits=limits, cwd=cwd, env=env, processes=processes
    )
    return done.block


def outcome(
    argv: list[str],
    tool_input: Any = None,
    *,
    timeout_s: float = GUARD_S,
    limits: ToolLimits | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    processes: ToolProcesses | None = None,
) -> Coroutine[Any, Any, ToolOutcome]:
    return run_tool_async(
        argv,
        {} if tool_input is None else tool_input,
        "toolu_1",
        timeout_s=timeout_s,
        limits=limits or ToolLimits(),
        cwd=cwd,
        env=dict(os.environ) if env is None else env,
        processes=ToolProcesses() if processes is None else processes,
    )


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie counts: only its parent may reap it)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], GUARD_S)  # hang guard: a live pid never turns readable
        return bool(readable)
    finally:
        os.close(fd)


async def first_line(fifo: Path) -> str:
    """The first line a tool writes to `fifo`, read without blocking the loop."""
    reading = open(fifo, "rb", buffering=0, opener=lambda p, _: os.open(p, os.O_RDONLY | os.O_NONBLOCK))  # noqa: SIM115 - the transport owns and closes it
    holder = os.open(fifo, os.O_WRONLY)  # a writer of ours: no EOF before the tool has written
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), reading)
    try:
        return (await asyncio.wait_for(reader.readline(), GUARD_S)).decode()
    finally:
        transport.close()
        os.close(holder)


def pids(text: str) -> list[int]:
    return [int(p) for p in text.split()]


# -- pure parts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keep_tail", "chunks", "kept", "total"),
    [
        (False, [b"abc", b"def"], b"abcde", 6),
        (False, [b"ab", b"c"], b"abc", 3),
        (False, [b"abcdefgh", b"ij"], b"abcde", 10),
        (True, [b"abc", b"def"], b"bcdef", 6),
        (True, [b"abcdefgh", b"ij"], b"fghij", 10),
        (True, [], b"", 0),
    ],
)
def test_a_capture_keeps_its_bound_and_counts_the_rest(
    keep_tail: bool, chunks: list[bytes], kept: bytes, total: int
) -> None:
    capture = Capture(5, keep_tail=keep_tail)
    for chunk in chunks:
        capture.add(chunk)
    assert (bytes(capture.kept), capture.total, capture.cut) == (kept, total, total > len(kept))


def test_rlimits_are_planned_from_the_limits_and_never_above_the_inherited_hard_limit() -> None:
    cpu, mem, fsize, core = (
        resource.RLIMIT_CPU,
        resource.RLIMIT_AS,
        resource.RLIMIT_FSIZE,
        resource.RLIMIT_CORE,
    )
    assert rlimit_plan(ToolLimits(), lambda _: INF) == [
        (cpu, 300, 301),
        (mem, 4 * 1024**3, 4 * 1024**3),
        (fsize, 1024**3, 1024**3),
        (core, 0, 0),
    ]
    unlimited = ToolLimits(cpu_s=None, memory_bytes=None, file_size_bytes=None, core_dump_bytes=None)
    assert rlimit_plan(unlimited, lambda _: INF) == []
    tight = {cpu: 100, mem: 1000, fsize: INF, core: INF}
    assert rlimit_plan(ToolLimits(cpu_s=100, memory_bytes=4000, file_size_bytes=None), tight.__getitem__) == [
        (cpu, 100, 100),
        (mem, 1000, 1000),
        (core, 0, 0),
    ]


def test_negative_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        ToolLimits(cpu_s=-1)


# -- results ----------------------------------------------------------------------------------


def test_stdout_is_the_result_and_the_input_arrives_as_json(run: Run[Any]) -> None:
    done = run(outcome(["cat"], {"order_id": "A1"}))
    assert done.error_kind is None
    result = done.block
    assert result == {"type": "tool_result", "tool_use_id": "toolu_1", "content": '{"order_id": "A1"}'}


def test_input_and_output_larger_than_a_pipe_flow_both_ways(run: Run[Any]) -> None:
    big = {"text": "x" * 500_000}
    assert run(call(["cat"], big))["content"] == json.dumps(big)
    assert run(call(["true"], big)) == {"type": "tool_result", "tool_use_id": "toolu_1", "content": ""}


def test_a_command_that_exits_without_reading_its_input_is_no_error(run: Run[Any]) -> None:
    # its stdin may close before, while or after the input is written: each is a normal end
    # (uvloop says RuntimeError where asyncio says BrokenPipeError; a loaded machine hit it)
    for size in (10, 100_000) * 10:
        assert run(call(["true"], {"text": "x" * size}))["content"] == ""


def test_a_non_zero_exit_is_an_error_quoting_the_end_of_stderr(run: Run[Any]) -> None:
    failing = run(
        call(py("import sys; print('out'); print('x' * 5000 + 'boom', file=sys.stderr); sys.exit(3)"))
    )
    assert failing["is_error"] is True
    assert failing["content"].startswith("exit code 3: xxx") and failing["content"].endswith("boom")
    assert len(failing["content"]) == len("exit code 3: ") + 2000
    quiet = run(outcome(py("print('only stdout'); raise SystemExit(2)")))
    assert quiet.block["content"] == "exit code 2: only stdout" and quiet.error_kind == "exit"


def test_non_utf8_output_is_decoded_with_replacement(run: Run[Any]) -> None:
    result = run(call(py(r"import sys; sys.stdout.buffer.write(b'ok \xff\xfe end')")))
    assert result["content"] == "ok \ufffd\ufffd end" and "is_error" not in result


def _not_executable(tmp_path: Path) -> list[str]:
    script = tmp_path / "tool.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    return [str(script)]


@pytest.mark.parametrize(
    ("argv", "cwd", "reason"),
    [
        (lambda _: ["/no/such/tool"], None, "[Errno 2] No such file or directory: '/no/such/tool'"),
        (_not_executable, None, "[Errno 13] Permission denied"),
        (lambda _: ["true"], "missing-dir", "No such file or directory"),
        (lambda _: [], None, "empty command"),
    ],
    ids=["missing", "not-executable", "missing-cwd", "empty"],
)
def test_a_tool_that_cannot_start_is_an_error_result(
    run: Run[Any], tmp_path: Path, argv: Callable[[Path], list[str]], cwd: str | None, reason: str
) -> None:
    processes = ToolProcesses()
    done = run(outcome(argv(tmp_path), cwd=tmp_path / cwd if cwd else None, processes=processes))
    assert done.error_kind == "not_started"
    result = done.block
    assert result["is_error"] is True
    assert result["content"].startswith("the tool could not be started: ") and reason in result["content"]
    assert not processes.pgids()


def test_the_command_gets_exactly_the_environment_given(
    run: Run[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for env in ({"PATH": os.environ["PATH"], "ONLY": "1"}, {"PATH": os.environ["PATH"], "LC_CTYPE": "C"}):
        out = run(call(["env", "-0"], env=env))["content"]
        assert dict(line.split("=", 1) for line in out.split("\0") if line) == env
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    shown = run(call(["env", "-0"], env=scrubbed_env()))["content"]
    assert "sk-ant-secret" not in shown and "PATH=" in shown


def test_sigpipe_and_sigxfsz_have_their_default_action_in_the_command(run: Run[Any]) -> None:
    status = run(call(["grep", "SigIgn", "/proc/self/status"]))["content"]
    ignored = int(status.split()[1], 16)
    assert ignored & (1 << (signal.SIGPIPE - 1) | 1 << (signal.SIGXFSZ - 1)) == 0


# -- output bound -----------------------------------------------------------------------------


def _peak_rss_reset() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        return False
    return True


def _status_kb(field: str) -> int:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1])


def test_100_mb_of_output_is_cut_to_the_bound_and_costs_little_memory(run: Run[Any]) -> None:
    written = 100 * 1024 * 1024
    rss_tracked = _peak_rss_reset()
    rss_before_kb = _status_kb("VmRSS")
    tracemalloc.start()
    try:
        done = run(outcome(["head", "-c", str(written), "/dev/zero"]))
        _, python_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    shown = 1024 * 1024
    result = done.block
    assert done.error_kind == "output_cut"  # the model gets a result, but the tool counts as failed
    assert "is_error" not in result
    assert result["content"].startswith("\0" * shown)
    assert (
        result["content"][shown:]
        == f"\n[output cut: the tool wrote {written} bytes, the first {shown} are shown]"
    )
    assert python_peak < 32 * 1024 * 1024
    if rss_tracked:
        assert _status_kb("VmHWM") - rss_before_kb < 50 * 1024


# -- the process group ------------------------------------------------------------------------


def test_a_timeout_kills_the_tool_and_what_it_started(run: Run[Any], tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    processes = ToolProcesses()
    # 2 s leave the script ample time to write its pids; it then waits on the sleep forever
    done = run(outcome(["sh", "-c", SPAWNER, "sh", str(pidfile)], timeout_s=2, processes=processes))
    assert done.error_kind == "timeout"
    result = done.block
    assert result == {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": "the tool timed out after 2 s",
        "is_error": True,
    }
    tool, grandchild = pids(pidfile.read_text())
    assert gone(tool) and gone(grandchild)
    assert not processes.pgids()


def test_cancelling_the_call_kills_the_group_and_propagates(run: Run[Any], tmp_path: Path) -> None:
    fifo = tmp_path / "pids"
    os.mkfifo(fifo)
    processes = ToolProcesses()

    async def cancel_once_running() -> list[int]:
        task = asyncio.create_task(call(["sh", "-c", SPAWNER, "sh", str(fifo)], processes=processes))
        running = pids(await first_line(fifo))
        while not processes.pgids():  # the tool may write before its call resumes and registers it
            await asyncio.sleep(0)
        assert len(processes.pgids()) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return running

    tool, grandchild = run(cancel_once_running())
    assert gone(tool) and gone(grandchild)
    assert not processes.pgids()


def test_cancelling_a_call_while_its_command_starts_kills_it_without_waiting(
    run: Run[Any], tmp_path: Path
) -> None:
    # cancelled inside asyncio's subprocess start, a command whose background child holds its
    # pipes used to block the cancellation until that child exited (here: 300 s)
    marker = f"anvil-abandoned-{tmp_path.name}"
    linger = "import time; time.sleep(300)"  # sleep-ok: the tool's own lingering child, killed by the test
    script = f'{sys.executable} -c "{linger}" {marker} & wait'
    processes = ToolProcesses()

    async def cancel_at_once() -> None:
        task = asyncio.create_task(call(["sh", "-c", script], processes=processes))
        await asyncio.sleep(0)  # the call is now starting the command
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(cancel_at_once())
    assert not processes.pgids()
    deadline = time.monotonic() + GUARD_S
    while left := [p for p in Path("/proc").glob("[0-9]*") if marker.encode() in _cmdline(p)]:
        if time.monotonic() > deadline:
            raise AssertionError(f"left running: {left}")
        time.sleep(0.02)  # sleep-ok: waiting (bounded) for the killed group to be gone


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def test_kill_all_kills_every_running_tool(run: Run[Any], tmp_path: Path) -> None:
    fifos = [tmp_path / "a", tmp_path / "b"]
    for fifo in fifos:
        os.mkfifo(fifo)
    processes = ToolProcesses()

    async def kill_while_running() -> tuple[list[dict[str, Any]], list[int]]:
        tasks = [
            asyncio.create_task(call(["sh", "-c", SPAWNER, "sh", str(f)], processes=processes)) for f in fifos
        ]
        running = [pid for f in fifos for pid in pids(await first_line(f))]
        assert processes.kill_all() == 2
        return list(await asyncio.gather(*tasks)), running

    results, running = run(kill_while_running())
    assert all(r["is_error"] and r["content"].startswith("exit code -9 (SIGKILL)") for r in results)
    assert all(gone(pid) for pid in running)
    assert not processes.pgids() and processes.kill_all() == 0


def test_a_process_left_running_by_a_finished_tool_is_killed(run: Run[Any]) -> None:
    # the background sleep keeps stdout open: the call ends when the tool exits, not at the guard
    result = run(call(["sh", "-c", "sleep 300 & echo $!; echo done"]))
    leftover, done = result["content"].split()
    assert done == "done" and "is_error" not in result
    assert gone(int(leftover))


# -- resource limits --------------------------------------------------------------------------


def test_the_file_size_limit_stops_a_tool_writing_a_bigger_file(run: Run[Any], tmp_path: Path) -> None:
    limits = ToolLimits(file_size_bytes=1024 * 1024)
    dd = ["dd", "if=/dev/zero", f"of={tmp_path / 'big'}", "bs=65536", "count=32"]  # 2 MiB
    done = run(outcome(dd, cwd=tmp_path, limits=limits))
    result = done.block
    assert done.error_kind == "killed"
    assert result["is_error"] is True and result["content"].startswith("exit code -25 (SIGXFSZ)")
    assert (tmp_path / "big").stat().st_size == 1024 * 1024


def test_the_cpu_limit_stops_a_cpu_burning_tool(run: Run[Any]) -> None:
    burn = py("while True: pass")  # bounded by RLIMIT_CPU: 1 s of CPU, then SIGXCPU
    result = run(call(burn, limits=ToolLimits(cpu_s=1)))
    assert result["is_error"] is True and result["content"].startswith("exit code -24 (SIGXCPU)")


def test_the_memory_limit_stops_a_tool_allocating_more(run: Run[Any]) -> None:
    grab = py("b = bytearray(1024 ** 3)")
    result = run(call(grab, limits=ToolLimits(memory_bytes=512 * 1024**2)))
    assert result["is_error"] is True and "MemoryError" in result["content"]
