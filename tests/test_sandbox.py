"""The tool sandbox's settings and edges: the bwrap command line, per-tool widening, what happens
where no sandbox can start (tool jobs refused, before anything is paid) or where the user turns
it off (tools run unsandboxed, and the run says so), and `anvil plan --sample` running no tool
command without --allow-tools."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from anvil_cli.config.load import load_settings
from anvil_cli.engine.worker.tools.runner import ToolProcesses, run_tool_async
from anvil_cli.engine.worker.tools.sandbox import UNSANDBOXED_NOTE, SandboxPolicy, bwrap_argv, find_sandbox
from anvil_cli.engine.worker.tools.toolbox import ToolContext
from anvil_cli.errors import AnvilError
from anvil_cli.exitcodes import ExitCode
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.loader import load_batch
from anvil_cli.jobs.toolspec import ToolSandbox, split_tools, tool_sandboxes
from tests.engine_support import anvil_cmd, cli_env, read_results, write_jobs

FOUND = find_sandbox(None)
needs_bwrap = pytest.mark.skipif(FOUND.bwrap is None, reason=f"no sandbox can start here: {FOUND.cause}")

HOME = Path("/home/u")
EXISTING = {
    "/tmp": "dir",
    "/run": "dir",
    "/home/u/.ssh": "dir",
    "/home/u/.netrc": "file",
    "/home/u/.config": "dir",
    "/home/u/.config/tool": "dir",
    "/work/launch": "dir",
    "/work/launch/.anvil": "dir",
    "/data/in": "dir",
    "/data/out": "dir",
    "/job": "dir",
}


def _kind(path: Path) -> str | None:
    return EXISTING.get(str(path))


def _argv(policy: SandboxPolicy) -> list[str]:
    return bwrap_argv("bwrap", ["tool", "--x"], Path("/job"), policy, home=HOME, kind=_kind)


def _mounts(argv: list[str]) -> list[tuple[str, str]]:
    """(flag, destination) of every mount, in order."""
    out, i = [], 0
    while i < len(argv) and argv[i] != "--":
        flag = argv[i]
        if flag in ("--ro-bind", "--bind"):
            out.append((flag, argv[i + 2]))
            i += 3
        elif flag in ("--tmpfs", "--remount-ro", "--proc", "--dev", "--size", "--chdir"):
            out.append((flag, argv[i + 1]))
            i += 2
        elif flag == "--setenv":
            i += 3
        else:
            out.append((flag, ""))
            i += 1
    return out


def test_the_default_sandbox_shares_nothing_and_hides_secrets_and_the_state_dir() -> None:
    state = Path("/work/launch/.anvil")
    argv = _argv(SandboxPolicy(tmp_bytes=1 << 20, hidden=(state,), launch_dir=Path("/work/launch")))
    mounts = _mounts(argv)
    flags = [f for f, _ in mounts]
    for needed in ("--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net"):
        assert needed in flags
    assert ("--cap-drop", "") in mounts and "ALL" in argv  # bwrap run by root would keep them all
    assert "--die-with-parent" in flags and "--new-session" in flags
    assert argv[-3:] == ["--", "tool", "--x"] and argv[argv.index("--chdir") + 1] == "/job"
    tmp = mounts.index(("--tmpfs", "/tmp"))
    assert mounts.index(("--ro-bind", "/")) < tmp < mounts.index(("--bind", "/job"))
    assert mounts[tmp - 1] == ("--size", str(1 << 20))  # a bounded /tmp
    assert ("--remount-ro", "/run") in mounts  # no host sockets
    assert ("--remount-ro", "/home/u/.ssh") in mounts and ("--ro-bind", "/home/u/.netrc") in mounts
    assert ("--ro-bind", "/work/launch") in mounts  # readable: relative paths resolve there
    # the state dir's mask comes last: nothing exposed before it (the launch dir) reaches it
    assert mounts.index(("--remount-ro", str(state))) > mounts.index(("--ro-bind", "/work/launch"))
    assert not any(dest.startswith("/home/u/.aws") for _, dest in mounts)  # missing: nothing to hide
    no_userns = ["--disable-userns"]
    hardened = bwrap_argv("bwrap", ["t"], Path("/job"), SandboxPolicy(), kind=_kind, hardening=no_userns)
    assert hardened[hardened.index("--unshare-user") + 1] == "--disable-userns"  # it needs a user namespace


@needs_bwrap
def test_a_bwrap_that_knows_it_is_told_to_allow_no_nested_user_namespace() -> None:
    help_text = subprocess.run([str(FOUND.bwrap), "--help"], capture_output=True, check=False)
    knows = b"--disable-userns" in help_text.stdout + help_text.stderr
    assert FOUND.hardening == (("--disable-userns",) if knows else ())


def test_settings_and_a_tool_widen_it_by_name() -> None:
    policy = SandboxPolicy(read_paths=(Path("/data/in"), Path("/home/u/.config/tool")), network=False)
    wide = policy.widened(read=(), write=["/data/out"], network=True)
    mounts = _mounts(_argv(wide))
    assert ("--unshare-net", "") not in mounts
    assert ("--ro-bind", "/data/in") in mounts and ("--bind", "/data/out") in mounts
    # asked for by name inside a secret store: exposed again after the store's mask
    mask = mounts.index(("--remount-ro", "/home/u/.config"))
    assert max(i for i, m in enumerate(mounts) if m == ("--ro-bind", "/home/u/.config/tool")) > mask
    assert ("--bind", "/missing") not in _mounts(_argv(policy.widened((), ["/missing"], False)))


def test_anvil_sandbox_is_validated_stripped_before_the_api_and_read_per_tool(tmp_path: Path) -> None:
    tool = {"name": "t", "input_schema": {"type": "object"}, "anvil_command": "true"}
    good = {**tool, "anvil_sandbox": {"network": True, "read": ["/data/in"], "write": ["~/out"]}}
    cleaned, runnable = split_tools({"tools": [good]})
    assert cleaned["tools"] == [{"name": "t", "input_schema": {"type": "object"}}]
    assert runnable == {"t": ["true"]}
    own = ToolSandbox(("/data/in",), (str(Path.home() / "out"),), True)
    assert tool_sandboxes({"tools": [good]})["t"] == own
    bad = {**tool, "anvil_sandbox": {"network": "yes", "write": ["relative/dir"], "exec": True}}
    batch = write_jobs(tmp_path / "b.jsonl", [{"id": "j", "prompt": "p", "tools": [bad]}])
    with pytest.raises(AnvilError) as caught:
        list(load_batch(batch))
    text = str(caught.value)
    for field in ("tools[0].anvil_sandbox.network", "tools[0].anvil_sandbox.write[0]", "anvil_sandbox.exec"):
        assert field in text, text
    assert "expected an absolute path" in text and "expected true or false" in text


def test_sandbox_settings_are_checked_and_paths_made_absolute(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("run:\n  tool_sandbox: docker\n")
    with pytest.raises(AnvilError) as caught:
        load_settings(tmp_path / "bad.yaml", env={})
    assert "bad.yaml:2: field 'run.tool_sandbox'" in str(caught.value)
    env = {"ANVIL_RUN__TOOL_READ_PATHS": '["data"]', "ANVIL_RUN__TOOL_SANDBOX": "none"}
    settings = load_settings(None, env=env)
    assert settings.run.tool_read_paths == [tmp_path / "data"] and settings.run.tool_sandbox == "none"
    assert load_settings(None, env={}).run.tool_sandbox == "bwrap"  # on by default


def _tool_batch(tmp_path: Path, marker: Path) -> Path:
    code = f"import os; open({str(marker)!r}, 'w').write(str(os.getpid())); print('ran')"
    touch = [sys.executable, "-c", code]
    tool = {"name": "touch", "description": "d", "input_schema": {"type": "object"}, "anvil_command": touch}
    jobs = [{"id": "plain", "prompt": "hello"}, {"id": "tool", "prompt": "use it", "tools": [tool]}]
    return write_jobs(tmp_path / "b.jsonl", jobs)


def _run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = anvil_cmd("run", str(tmp_path / "b.jsonl"), "--simulate", "--json", "-o", "out.jsonl", *args)
    env = env or cli_env()
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_where_no_sandbox_can_start_tool_jobs_are_refused_and_say_how_to_accept(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    _tool_batch(tmp_path, marker)
    env = {**cli_env(), "ANVIL_RUN__TOOL_BWRAP": str(tmp_path / "no-such-bwrap")}
    done = _run(tmp_path, env=env)
    assert done.returncode == ExitCode.JOBS_FAILED, done.stderr
    results = {r["id"]: r for r in read_results(tmp_path / "out.jsonl")}
    assert results["plain"]["status"] == "succeeded" and results["tool"]["status"] == "failed"
    error = results["tool"]["error"]
    assert error["type"] == "tool_sandbox"
    assert "no-such-bwrap" in error["message"] and "run.tool_sandbox: none" in error["message"]
    assert results["tool"]["attempts"] == 0 and results["tool"]["cost_usd"] == 0  # refused before paying
    assert not marker.exists()


def test_tool_sandbox_none_runs_tools_unsandboxed_and_the_run_says_so(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    _tool_batch(tmp_path, marker)
    env = {**cli_env(), "ANVIL_RUN__TOOL_SANDBOX": "none", "ANVIL_RUN__TOOL_BWRAP": "/no/such/bwrap"}
    done = _run(tmp_path, env=env)
    assert done.returncode == ExitCode.OK, done.stderr
    assert json.loads(done.stdout)["tool_sandbox"] == "none"
    assert f"note: {UNSANDBOXED_NOTE}" in done.stderr
    assert UNSANDBOXED_NOTE == "tools ran UNSANDBOXED (run.tool_sandbox: none)"
    assert int(marker.read_text()) > 2  # a host pid, and it wrote where anvil runs: no sandbox


@needs_bwrap
def test_the_default_run_sandboxes_tools_and_says_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    _tool_batch(tmp_path, marker)
    done = _run(tmp_path)
    assert done.returncode == ExitCode.OK, done.stderr
    assert json.loads(done.stdout)["tool_sandbox"] == "bwrap" and "UNSANDBOXED" not in done.stderr
    assert not marker.exists()  # the launch dir is read-only in the sandbox


def _plan(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = anvil_cmd("plan", str(tmp_path / "b.jsonl"), "--simulate", "--sample", "2", "--json", *args)
    env = {**cli_env(), "ANVIL_RUN__TOOL_SANDBOX": "none"}  # so a tool that runs leaves its mark
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_plan_sample_runs_no_tool_command_unless_allowed(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    _tool_batch(tmp_path, marker)
    done = _plan(tmp_path)
    assert done.returncode == ExitCode.OK, done.stderr
    plan = json.loads(done.stdout)
    assert plan["sample"]["jobs"] == 2 and plan["sample"]["answers"] == 2  # the tool job's first answer
    assert any("1 tool job(s) sampled for their first answer only" in n for n in plan["notes"])
    assert not marker.exists()
    allowed = _plan(tmp_path, "--allow-tools")
    assert allowed.returncode == ExitCode.OK, allowed.stderr
    assert marker.exists()
    assert not any("first answer only" in n for n in json.loads(allowed.stdout)["notes"])


@needs_bwrap
def test_tool_workdir_cwd_writes_where_anvil_runs_but_never_in_the_state_dir(tmp_path: Path) -> None:
    settings = load_settings(None, env={"ANVIL_RUN__TOOL_WORKDIR": "cwd"})
    settings.state_dir.mkdir()
    journal = settings.state_dir / "journal.sqlite"
    journal.write_text("the journal")
    ctx = ToolContext.for_run(settings.run, settings.state_dir, "run-1", ToolProcesses())
    job = Job(id="j", seq=0, messages=[{"role": "user", "content": "x"}], model="m", max_tokens=1)
    code = "open('here', 'w').write('x')\n"
    code += "try: open('.anvil/journal.sqlite', 'a').write('PLANTED')\nexcept OSError: pass"
    assert asyncio.run(ctx.refusal()) is None

    async def call() -> object:
        limits = ctx.limits_for(job, "t")
        kwargs = {"timeout_s": 60.0, "env": ctx.env, "processes": ctx.processes}
        return await run_tool_async([sys.executable, "-c", code], {}, "t", limits=limits, cwd=None, **kwargs)

    asyncio.run(call())
    assert (tmp_path / "here").exists() and journal.read_text() == "the journal"
    assert ctx.workdir_for(job) is None
