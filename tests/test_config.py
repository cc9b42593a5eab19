"""Settings: precedence (flag > env > file > default) and problems that say where the bad value is."""

from __future__ import annotations

from pathlib import Path

import pytest

from anvil_cli.config.load import load_settings
from anvil_cli.config.settings import Settings
from anvil_cli.errors import ConfigError, Problem

REPO = Path(__file__).parents[1]


def problems_of(**kwargs: object) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        load_settings(**kwargs)  # type: ignore[arg-type]
    return info.value.problems


def texts(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems]


def write(name: str, text: str) -> Path:
    path = Path(name)
    path.write_text(text, encoding="utf-8")
    return path


# -- precedence --------------------------------------------------------------------------------


def test_defaults_when_nothing_is_given() -> None:
    settings = load_settings(env={})
    assert settings.scaling.max_agents == 100
    assert settings.rate_limits["default"].requests_per_minute == 300
    assert settings.state_dir == Path.cwd() / ".anvil"


def test_file_beats_defaults_and_env_beats_file_and_flag_beats_env() -> None:
    cfg = write("c.yaml", "scaling:\n  workers: 2\n  max_agents: 50\nbudget:\n  max_usd: 10\n")
    env = {"ANVIL_SCALING__WORKERS": "3", "ANVIL_BUDGET__MAX_USD": "20"}
    settings = load_settings(cfg, env=env, overrides={"scaling": {"workers": 4}})
    assert settings.scaling.workers == 4  # flag
    assert settings.budget.max_usd == 20  # env
    assert settings.scaling.max_agents == 50  # file
    assert settings.scaling.min_agents == 10  # default


def test_none_in_overrides_means_flag_not_given() -> None:
    settings = load_settings(env={"ANVIL_SCALING__WORKERS": "3"}, overrides={"scaling": {"workers": None}})
    assert settings.scaling.workers == 3


def test_anvil_yaml_in_cwd_is_used_when_no_path_given() -> None:
    write("anvil.yaml", "retries:\n  max_attempts: 3\n")
    assert load_settings(env={}).retries.max_attempts == 3


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANVIL_RETRIES__MAX_ATTEMPTS", "4")
    assert load_settings().retries.max_attempts == 4


def test_env_nested_rate_limits_and_state_dir(tmp_path: Path) -> None:
    env = {
        "ANVIL_RATE_LIMITS__DEFAULT__REQUESTS_PER_MINUTE": "1000",
        "ANVIL_RATE_LIMITS__CLAUDE_HAIKU_4_5__BURST_SIZE": "7",
        "ANVIL_STATE_DIR": "/tmp/anvil-state",
        "ANVIL_DEBUG": "1",  # not a setting: ignored
    }
    settings = load_settings(env=env)
    assert settings.rate_limits["default"].requests_per_minute == 1000
    assert settings.rate_limits["claude-haiku-4-5"].burst_size == 7
    assert settings.state_dir == Path("/tmp/anvil-state")


def test_relative_state_dir_is_relative_to_cwd(tmp_path: Path) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    cfg = sub / "anvil.yaml"
    cfg.write_text("state_dir: runs/state\n")
    assert load_settings(cfg, env={}).state_dir == tmp_path / "runs" / "state"
    assert not (tmp_path / "runs").exists()


def test_empty_file_means_defaults() -> None:
    cfg = write("c.yaml", "# nothing yet\n")
    assert load_settings(cfg, env={}) == load_settings(env={})


def test_repo_anvil_yaml_is_valid_and_documents_the_defaults() -> None:
    settings = load_settings(REPO / "anvil.yaml", env={})
    defaults = Settings()
    defaults.state_dir = settings.state_dir
    assert settings == defaults
    text = (REPO / "anvil.yaml").read_text()
    for section in Settings.model_fields:
        assert f"\n{section}:" in text, section


# -- problems ----------------------------------------------------------------------------------


def test_every_file_problem_has_file_line_and_field() -> None:
    cfg = write(
        "c.yaml",
        "scaling:\n  workers: many\n  max_agent: 5\nretries:\n  max_attempts: 0\nbudgett: {}\n",
    )
    got = texts(problems_of(config_path=cfg, env={}))
    assert "c.yaml:2: field 'scaling.workers': Input should be a valid integer, " in got[0]
    assert "got 'many'" in got[0]
    assert "c.yaml:3: field 'scaling.max_agent': unknown key 'max_agent'; did you mean 'max_agents'?" in got
    assert any(t.startswith("c.yaml:5: field 'retries.max_attempts'") for t in got)
    assert "c.yaml:6: field 'budgett': unknown key 'budgett'; did you mean 'budget'?" in got


def test_cross_field_checks() -> None:
    cfg = write(
        "c.yaml",
        "scaling:\n  min_agents: 50\n  max_agents: 10\nbudget:\n  max_usd: 5\n  warn_usd: 8\n"
        "retries:\n  backoff_base_s: 10\n  backoff_max_s: 1\n",
    )
    got = texts(problems_of(config_path=cfg, env={}))
    assert "c.yaml:2: field 'scaling.min_agents': min_agents (50) must be <= max_agents (10)" in got
    assert "c.yaml:6: field 'budget.warn_usd': warn_usd (8) must be <= max_usd (5)" in got
    assert any(t.startswith("c.yaml:8: field 'retries.backoff_base_s'") for t in got)


def test_scale_down_must_be_below_scale_up() -> None:
    got = texts(problems_of(env={}, overrides={"scaling": {"scale_down_threshold": 90}}))
    assert got == ["command line: field 'scaling.scale_down_threshold': scale_down_threshold (90) "
                   "must be below scale_up_threshold (80)"]  # fmt: skip


def test_env_problems_name_the_variable() -> None:
    got = texts(problems_of(env={"ANVIL_SCALING__WORKERS": "abc", "ANVIL_SCALNG__WORKERS": "2"}))
    assert any(
        t.startswith("environment variable ANVIL_SCALING__WORKERS: field 'scaling.workers'") for t in got
    )
    assert any("ANVIL_SCALNG__WORKERS" in t and "did you mean 'scaling'" in t for t in got)


def test_rate_limit_keys_must_be_models_or_matching_globs() -> None:
    cfg = write(
        "c.yaml",
        "rate_limits:\n  claude-opus-*: {requests_per_minute: 5}\n  claude-haiku-4-6: {burst_size: 2}\n"
        "  gpt-*: {burst_size: 2}\n",
    )
    got = texts(problems_of(config_path=cfg, env={}))
    assert len(got) == 2
    assert got[0].startswith("c.yaml:3: field 'rate_limits.claude-haiku-4-6': unknown model")
    assert "did you mean 'claude-haiku-4-5'?" in got[0]
    assert got[1].startswith(
        "c.yaml:4: field 'rate_limits.gpt-*': the pattern 'gpt-*' matches no known model"
    )


def test_routing_models_must_be_known_unless_priced() -> None:
    cfg = write(
        "c.yaml", "routing:\n  simple: claude-haiku-4-6\n  fallbacks:\n    claude-opus-4-8: [mine-1]\n"
    )
    got = texts(problems_of(config_path=cfg, env={}))
    assert got[0] == (
        "c.yaml:2: field 'routing.simple': unknown model 'claude-haiku-4-6'; did you mean 'claude-haiku-4-5'?"
    )
    assert got[1].startswith("c.yaml:4: field 'routing.fallbacks.claude-opus-4-8[0]': unknown model 'mine-1'")
    cfg.write_text("routing:\n  simple: mine-1\nprices:\n  mine-1: {input: 1, output: 2}\n")
    assert load_settings(cfg, env={}).routing.simple == "mine-1"


def test_yaml_syntax_error_has_line_and_column() -> None:
    cfg = write("c.yaml", "scaling:\n  workers: [1\n")
    (problem,) = problems_of(config_path=cfg, env={})
    assert problem.file == "c.yaml" and problem.line == 3 and problem.column is not None
    assert "YAML syntax error" in problem.message


def test_non_utf8_file() -> None:
    Path("c.yaml").write_bytes(b"scaling:\n  workers: 2\n# caf\xe9\n")
    (problem,) = problems_of(config_path=Path("c.yaml"), env={})
    assert problem.line == 3 and "not valid UTF-8" in problem.message


def test_explicit_missing_file_is_an_error() -> None:
    (problem,) = problems_of(config_path=Path("nope.yaml"), env={})
    assert str(problem) == "nope.yaml: config file not found"


def test_top_level_must_be_a_mapping() -> None:
    (problem,) = problems_of(config_path=write("c.yaml", "- a\n- b\n"), env={})
    assert "expected a mapping of settings" in problem.message


def test_duplicate_keys_are_reported() -> None:
    (problem,) = problems_of(config_path=write("c.yaml", "budget:\n  max_usd: 1\n  max_usd: 2\n"), env={})
    assert problem.line == 3 and problem.field == "budget.max_usd" and "duplicate key" in problem.message


@pytest.mark.parametrize(
    ("variable", "field"),
    [("ANVIL_STATE_DIR", "state_dir"), ("ANVIL_RUN__TOOL_READ_PATHS", "run.tool_read_paths")],
)
def test_a_home_directory_that_does_not_exist_is_a_config_error(variable: str, field: str) -> None:
    # found by tests/test_input_properties.py: `~user` of no such user made pathlib raise
    value = '["~no-such-user-anvil/x"]' if "PATHS" in variable else "~no-such-user-anvil/x"
    with pytest.raises(ConfigError) as caught:
        load_settings(None, env={variable: value})
    (problem,) = caught.value.problems
    assert problem.field == field and problem.file == f"environment variable {variable}"
    assert "home directory that cannot be found" in problem.message
