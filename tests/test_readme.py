"""The README tells the truth: its two commands work on a fresh copy, its links lead somewhere.

The commands are parsed from README.md itself (the one-line block under "## Quick start", the
first block under "## Tests"), so a README that changes shape breaks these tests rather than
leaving them testing a command nobody reads.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from anvil_cli.jobs.loader import load_batch

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

# What the test command's run is narrowed to (see the fresh-copy test's docstring): one test of
# the simulator through the real SDK, and one tool-runner test, which runs once on asyncio and
# once on uvloop: 3 tests, none skipped, proves the command's extras include the `fast` one.
SMALL_TESTS = "test_message_shape_and_digest or test_stdout_is_the_result_and_the_input_arrives_as_json"
SMALL_TESTS_PASSED = 3


def _section(text: str, heading: str) -> str:
    """The body of the `## heading...` section (up to the next `## `)."""
    match = re.search(rf"^## {re.escape(heading)}.*?$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README.md has no section starting '## {heading}'"
    return match.group(1)


def _blocks(section: str) -> list[list[str]]:
    """The fenced code blocks of a section, each as its non-empty lines."""
    found = re.findall(r"^```[a-z]*\n(.*?)^```", section, re.M | re.S)
    return [[line for line in block.splitlines() if line.strip()] for block in found]


def readme_quick_start(text: str) -> str:
    """The quick start's one line: it installs Anvil and runs a batch against the simulator."""
    blocks = _blocks(_section(text, "Quick start"))
    assert blocks and len(blocks[0]) == 1, "the quick start should open with a one-line command"
    line = blocks[0][0]
    assert "pip install" in line and "anvil run" in line and "--simulate" in line, line
    return line


def readme_tests_command(text: str) -> str:
    """The line under "## Tests": it installs the test tools and runs the suite and the checks."""
    blocks = _blocks(_section(text, "Tests"))
    assert blocks and len(blocks[0]) == 1, "the Tests section should open with a one-line command"
    line = blocks[0][0]
    assert line.startswith("pip install") and "pytest" in line, line
    return line


def test_the_readme_test_command_is_exactly_what_ci_runs() -> None:
    """`.ci/run` runs the README's test line verbatim (its last line continues with the Ray tests)."""
    line = readme_tests_command(README.read_text(encoding="utf-8"))
    ci_run = (REPO / ".ci/run").read_text(encoding="utf-8")
    ci_lines = [raw.rstrip().removesuffix("\\").rstrip() for raw in ci_run.splitlines()]
    assert line in ci_lines, f".ci/run does not run the README's test command: {line}"
    assert "[test,fast]" in line.replace(" ", ""), "the tool runner's uvloop tests need the fast extra"


_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors for a file's headings: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, re.M):
        anchors.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
    return anchors


def test_every_relative_link_in_the_readme_and_docs_leads_to_a_file_and_heading() -> None:
    pages = [README, *sorted((REPO / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in _LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # https://, mailto:
            path_part, _, anchor = target.partition("#")
            dest = (page.parent / path_part).resolve() if path_part else page
            if not dest.exists() or not dest.is_relative_to(REPO):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such file)")
            elif anchor and anchor not in _anchors(dest.read_text(encoding="utf-8")):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 200, "the README is for newcomers"


def _ignored(repo: Path, paths: list[str]) -> set[str]:
    """Which of `paths` git ignores in `repo` (whether or not they exist)."""
    done = subprocess.run(
        ["git", "-C", str(repo), "check-ignore", "--no-index", "--stdin"],
        input="\n".join(paths), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    return set(done.stdout.split())


def test_what_the_readme_writes_is_ignored_here_and_by_the_lines_it_offers(tmp_path: Path) -> None:
    """Results, reports (named by `-o` as the README does, or by default) and the state dir are
    ignored by this repository's .gitignore, and by the lines the README offers to copy."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    text = README.read_text(encoding="utf-8")
    offered = next(b for b in _blocks(text) if ".anvil/" in b)
    written = ["results.jsonl", "results-nightly.jsonl", "report.html", "report-2026-12-05.html",
               "anvil-report-20261205-030224-c2fa36.html", ".anvil/journal.sqlite"]  # fmt: skip
    assert _ignored(REPO, written) == set(written)
    user_repo = tmp_path / "project"
    subprocess.run(["git", "init", "-q", str(user_repo)], check=True)
    (user_repo / ".gitignore").write_text("\n".join(offered) + "\n")
    assert _ignored(user_repo, written) == set(written)
    assert _ignored(REPO, ["anvil_cli/web/report.html", "docs/report.png"]) == set(), "too broad"


def _fresh_machine_env() -> dict[str, str]:
    """The environment of a new shell: no virtualenv active, no PYTHONPATH, nothing of pytest's.

    pip's own settings (PIP_*, its config files and cache) stay: they are how this machine's pip
    reaches a package index, as a user's would.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "ANVIL_", "ANTHROPIC_", "PYTHON", "VIRTUAL_ENV"))}  # fmt: skip
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin)
    return env


def _skip_unless_a_fresh_install_can_work(env: dict[str, str]) -> None:
    version = subprocess.run(
        ["bash", "-c", "python3 -c 'import sys; print(*sys.version_info[:2])'"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if version.returncode != 0:
        pytest.skip("no python3 on PATH outside this virtualenv")
    if tuple(int(n) for n in version.stdout.split()) < (3, 11):
        pytest.skip(f"python3 on PATH is {version.stdout.strip()}; the README requires 3.11 or newer")
    probe = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", "anthropic"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"pip cannot reach a package index to install into a fresh virtualenv: {last}")
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the copy is made of the files git tracks")


def _copy_tracked_files(dest: Path) -> None:
    """The repository as a fresh clone would have it: the files git tracks, as they are now."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True)
    for name in listed.stdout.decode().split("\0"):
        source = REPO / name
        if name and source.is_file():  # tracked but deleted in the worktree: not in the copy
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def _run(command: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600, check=False)  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"`{command}` exited {done.returncode}:\n{output[-4000:]}"
    return output


def _git_status() -> str:
    return subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip


@pytest.mark.readme
@pytest.mark.timeout(1200)
def test_the_readme_commands_work_in_a_fresh_virtualenv_on_a_copy(tmp_path: Path) -> None:
    """The quick start, then the test command, as a newcomer runs them, on a copy of the repo.

    The copy holds only what git tracks (what a clone gets); the commands run through bash in a
    new shell's environment (no virtualenv active, no PYTHONPATH), so `python3 -m venv` makes a
    fresh virtualenv and pip installs every dependency into it from the package index: no
    `--system-site-packages`, no `--no-deps`. pip's cache is used as pip always uses it: it holds
    the same files the index serves, so it speeds this up without changing what gets installed.
    Without a reachable index (or python3 >= 3.11, or git) the test is skipped, saying which.

    The quick start is checked by what it produced: a results file with one line per job of the
    batch it names, in batch order, every one succeeded with a simulated answer, mode 0600.

    The test command would run this whole suite inside the suite (this test included: a
    recursion). So it runs exactly as written, in the same virtualenv (the README says "in the
    virtualenv above"), with PYTEST_ADDOPTS narrowing pytest with `-k` to SMALL_TESTS: pip
    really installs the test extras, pytest really collects every test module (an import
    error anywhere fails it), runs three tests (the tool runner's on uvloop too, so the `fast`
    extra must be installed), then ruff and mypy check the whole copy for real.
    """
    env = _fresh_machine_env()
    _skip_unless_a_fresh_install_can_work(env)
    text = README.read_text(encoding="utf-8")
    quick_start, tests_line = readme_quick_start(text), readme_tests_command(text)
    before = _git_status()
    copy = tmp_path / "anvil"
    _copy_tracked_files(copy)
    try:
        _run(quick_start, copy, env)
        run_args = shlex.split(quick_start.split("&&")[-1])
        assert run_args[:2] == ["anvil", "run"], run_args
        batch, results_path = copy / run_args[2], copy / run_args[run_args.index("-o") + 1]
        expected_ids = [job.id for job in load_batch(batch)]
        assert expected_ids, f"{batch} has no jobs"
        results = [json.loads(line) for line in results_path.read_text().splitlines()]
        assert [r["id"] for r in results] == expected_ids
        for result in results:
            assert result["status"] == "succeeded" and result["error"] is None, result
            assert result["output"].startswith("sim:"), result["output"][:80]
        assert stat.S_IMODE(results_path.stat().st_mode) == 0o600

        env["PYTEST_ADDOPTS"] = f"-rs -k {shlex.quote(SMALL_TESTS)}"
        output = _run(f". .venv/bin/activate && {tests_line}", copy, env)
        passed = re.search(r"(\d+) passed", output)
        assert passed and int(passed.group(1)) == SMALL_TESTS_PASSED, output[-4000:]
        assert not re.search(r"SKIPPED.*test_(tool_runner|sim_messages)", output), output[-4000:]
        assert "All checks passed!" in output and "Success: no issues found" in output, output[-4000:]
        assert _git_status() == before, "the test wrote into the repository"
    finally:
        shutil.rmtree(copy / ".venv", ignore_errors=True)  # a few hundred MB; pytest keeps tmp dirs
