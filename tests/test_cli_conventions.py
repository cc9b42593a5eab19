"""What users expect of a command line (gh, uv, llm, pytest): `--version`, `-h` everywhere, bare
`anvil` is the help (exit 0), choices listed and checked (exit 2), help that fits 80 columns
with every option name whole, one-line command summaries, and `--state-dir` on `anvil plan`."""

from __future__ import annotations

import json
import re
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from anvil_cli.cli import app
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import run_cli, run_inprocess, write_config, write_jsonl_batch

runner = CliRunner()
GROUP: Any = typer.main.get_command(app)  # typer's own click (vendored): its group of commands
COMMANDS = sorted(GROUP.commands)
WIDTH = 80


def invoke(*args: str, columns: int = WIDTH) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"NO_COLOR": "1", "COLUMNS": str(columns)}, prog_name="anvil")
    return result.exit_code, result.output


def test_version_is_the_package_s(tmp_path: Path) -> None:
    for flag in ("--version", "-V"):
        done = run_cli(flag, cwd=tmp_path)
        assert (done.returncode, done.stdout, done.stderr) == (0, f"anvil {version('anvil-cli')}\n", "")
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", version("anvil-cli"))


def test_bare_anvil_prints_the_help_on_stdout_and_exits_0(tmp_path: Path) -> None:
    bare = run_cli(cwd=tmp_path)
    helped = run_cli("--help", cwd=tmp_path)
    assert (bare.returncode, bare.stderr) == (0, "")
    assert bare.stdout.startswith("Usage: anvil [OPTIONS] COMMAND") and bare.stdout == helped.stdout
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_dash_h_is_help_on_every_command(command: list[str]) -> None:
    short = invoke(*command, "-h")
    assert short[0] == 0 and short[1].startswith("Usage: anvil")
    assert short == invoke(*command, "--help")


def _option_names(command: Any) -> list[str]:
    options = [p for p in command.params if p.param_type_name == "option"]
    return ["-h", "--help", *(name for p in options for name in p.opts + p.secondary_opts)]


@pytest.mark.parametrize("command", ["", *COMMANDS])
@pytest.mark.parametrize("columns", [WIDTH, 200])
def test_help_fits_80_columns_with_every_option_whole(command: str, columns: int) -> None:
    code, out = invoke(*([command] if command else []), "--help", columns=columns)
    assert code == 0
    too_wide = [line for line in out.splitlines() if len(line) > WIDTH]
    assert too_wide == []
    assert "<bool>" not in out  # a flag takes no value
    assert not re.search(r"-[\w-]+ <", out)  # an option's value has a name (N, FILE, USD), not a type
    cmd = GROUP.commands[command] if command else GROUP
    for name in _option_names(cmd):
        whole = rf"(?<![\w-]){re.escape(name)}(?![\w-])"
        assert re.search(whole, out), f"{name} is cut in `anvil {command} -h`"


def test_the_command_list_has_a_one_line_summary_each() -> None:
    code, out = invoke("--help")
    listed = out.split("\nCommands:\n", 1)[1].splitlines()
    assert code == 0 and len(listed) == len(COMMANDS)  # no continuation lines
    summaries = dict(re.fullmatch(r"  (\S+)\s+(\S.*)", line).groups() for line in listed)  # type: ignore[union-attr]
    assert sorted(summaries) == COMMANDS
    assert all(s.endswith(".") and not s.endswith("...") for s in summaries.values()), summaries


@pytest.mark.parametrize(
    ("args", "metavar", "choices"),
    [
        (["run", "b.jsonl", "--mode", "fast"], "--mode messages|batches", "'messages', 'batches'"),
        (["run", "b.jsonl", "--backend", "k8s"], "--backend local|ray", "'local', 'ray'"),
        (["simulate", "--tier", "9"], "--tier 1|2|3|4|start|build|scale", "1, 2, 3, 4, start, build, scale"),
    ],
)
def test_choices_are_listed_in_the_help_and_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], metavar: str, choices: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "b.jsonl").write_text('{"prompt": "x"}\n')
    assert metavar in invoke(args[0], "--help")[1]
    code, out = invoke(*args)
    assert code == 2 and choices in out and args[-1] in out, out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.jsonl"]  # nothing written


def test_plan_reads_the_state_dir_it_is_given(tmp_path: Path) -> None:
    """`--state-dir` beats the config file's: the earlier run's answers there shape the plan."""
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a", "b", "c"])
    elsewhere = tmp_path / "elsewhere"
    with SimServer(SimConfig(seed=4)).start_thread() as sim:
        config = write_config(tmp_path / "anvil.yaml", sim.base_url, state_dir=str(elsewhere))
        run_inprocess(config, batch)
    config_here = write_config(tmp_path / "plan.yaml", "http://127.0.0.1:9")  # state dir: ./.anvil

    def notes(*args: str) -> list[str]:
        code, out = invoke("plan", str(batch), "--simulate", "--json", "--config", str(config_here), *args)
        assert code == 0, out
        return list(json.loads(out)["notes"])

    assert not any("earlier runs" in n for n in notes())
    given = notes("--state-dir", str(elsewhere))
    assert any(n.startswith("output lengths of earlier runs used for: ") for n in given), given
    assert not (tmp_path / ".anvil").exists()
