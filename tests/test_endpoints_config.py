"""The `endpoints:` section (config/endpoint.py, config/endpoint_checks.py): each entry resolved to
an `Endpoint` as each provider's SDK client needs it, and every mistake refused before a run, by
`anvil validate` at its file and line, naming the endpoint and the field, never a secret."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from anvil_cli.cli import app
from anvil_cli.config import providers
from anvil_cli.config.endpoint import EndpointError, resolve_endpoint, resolve_endpoints
from anvil_cli.config.endpoint_checks import check_endpoints, endpoint_errors
from anvil_cli.config.load import load_settings
from anvil_cli.config.settings import Settings
from anvil_cli.errors import ConfigError, UsageError
from anvil_cli.session.context import RunOptions, run_endpoints

runner = CliRunner()
SECRET = "sk-ant-secret-value-0123456789"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "anvil.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _settings(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Settings:
    return load_settings(_write(tmp_path, text), env=env or {})


def _problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _settings(tmp_path, text, env)
    return [str(p) for p in caught.value.problems]


TWO = """
endpoints:
  - name: org-a
    api_key_env: KEY_A
    rate_limits: {default: {requests_per_minute: 4000, burst_size: 50}}
  - name: bedrock-east
    provider: bedrock
    region: us-east-1
    models: {claude-sonnet-4-6: us.anthropic.claude-sonnet-4-6-custom}
    rate_limits: {default: {requests_per_minute: 500}}
"""


def test_without_endpoints_the_one_endpoint_is_todays(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "scaling: {workers: 1}\n")
    env = {"ANTHROPIC_API_KEY": SECRET, "ANTHROPIC_BASE_URL": "http://proxy:8080"}
    assert resolve_endpoints(settings, env) == (resolve_endpoint(settings, env),)
    (only,) = resolve_endpoints(settings, env)
    assert (only.name, only.provider, only.base_url, only.api_key) == (
        "",
        "anthropic",
        "http://proxy:8080",
        SECRET,
    )


def test_each_entry_in_order_with_its_provider_fields(tmp_path: Path) -> None:
    settings = _settings(tmp_path, TWO)
    env = {"KEY_A": SECRET, "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "aws-secret"}
    org, bedrock = resolve_endpoints(settings, env)
    assert (org.name, org.provider, org.api_key, org.base_url) == (
        "org-a",
        "anthropic",
        SECRET,
        "https://api.anthropic.com",
    )
    assert (bedrock.name, bedrock.provider, bedrock.region) == ("bedrock-east", "bedrock", "us-east-1")
    assert bedrock.base_url == "https://bedrock-runtime.us-east-1.amazonaws.com"
    assert bedrock.host == "bedrock-runtime.us-east-1.amazonaws.com:443"
    assert bedrock.aws_credentials == ("AKIAEXAMPLE", "aws-secret", None)
    assert bedrock.credential_name == "aws" and bedrock.api_key is None
    # the user's mapping wins; the models Anvil knows Bedrock serves get their inference profile
    assert bedrock.model_id("claude-sonnet-4-6") == "us.anthropic.claude-sonnet-4-6-custom"
    assert bedrock.model_id("claude-haiku-4-5") == "us.anthropic.claude-haiku-4-5-20251001-v1:0"
    assert bedrock.serves("claude-haiku-4-5") and not bedrock.serves("claude-sonnet-5")
    assert org.serves("claude-opus-4-8") and org.model_id("claude-opus-4-8") == "claude-opus-4-8"
    for endpoint in (org, bedrock):
        assert SECRET not in repr(endpoint) and "aws-secret" not in repr(endpoint)
    assert "aws-secret" in bedrock.secrets()


def test_anthropic_base_url_variable_is_the_implicit_endpoints_only(tmp_path: Path) -> None:
    settings = _settings(tmp_path, TWO)
    env = {"KEY_A": SECRET, "ANTHROPIC_BASE_URL": "http://elsewhere:1"}
    org, _ = resolve_endpoints(settings, env)
    assert org.base_url == "https://api.anthropic.com"


@pytest.mark.parametrize(
    ("entry", "env", "expect"),
    [
        # bedrock: a Bedrock API key named, or the SDK's own variable for one, or the worker's chain
        (
            {"provider": "bedrock", "region": "eu-west-1", "api_key_env": "BR_KEY"},
            {"BR_KEY": "k1"},
            ("api_key", "k1"),
        ),
        (
            {"provider": "bedrock", "region": "eu-west-1"},
            {"AWS_BEARER_TOKEN_BEDROCK": "k2"},
            ("api_key", "k2"),
        ),
        ({"provider": "bedrock", "region": "eu-west-1"}, {}, ("none", None)),
        # vertex: an access token from the variable named, else the worker's ADC
        (
            {"provider": "vertex", "region": "us-east5", "project_id": "p", "auth_token_env": "TOK"},
            {"TOK": "t"},
            ("auth_token", "t"),
        ),
        ({"provider": "vertex", "region": "us-east5", "project_id": "p"}, {}, ("none", None)),
        # foundry: the key named, else ANTHROPIC_FOUNDRY_API_KEY (as the SDK reads it)
        ({"provider": "foundry", "resource": "res"}, {"ANTHROPIC_FOUNDRY_API_KEY": "f"}, ("api_key", "f")),
        # anthropic: the key named, or a token named, else ANTHROPIC_API_KEY
        ({"auth_token_env": "TOK"}, {"TOK": "t"}, ("auth_token", "t")),
        ({}, {"ANTHROPIC_API_KEY": "a"}, ("api_key", "a")),
    ],
)
def test_credentials_per_provider(
    tmp_path: Path, entry: dict[str, Any], env: dict[str, str], expect: tuple[str, Any]
) -> None:
    settings = _settings(tmp_path, json.dumps({"endpoints": [{"name": "e", **entry}]}))
    (endpoint,) = resolve_endpoints(settings, env)
    kind, value = expect
    assert endpoint.credential_name == kind
    assert getattr(endpoint, kind, None) == value if kind != "none" else endpoint.secrets() == []


@pytest.mark.parametrize(
    ("entry", "url"),
    [
        (
            {"provider": "vertex", "region": "us-east5", "project_id": "p"},
            "https://us-east5-aiplatform.googleapis.com/v1",
        ),
        (
            {"provider": "vertex", "region": "global", "project_id": "p"},
            "https://aiplatform.googleapis.com/v1",
        ),
        (
            {"provider": "vertex", "region": "eu", "project_id": "p"},
            "https://aiplatform.eu.rep.googleapis.com/v1",
        ),
        ({"provider": "foundry", "resource": "my-res"}, "https://my-res.services.ai.azure.com/anthropic/"),
        (
            {"provider": "foundry", "base_url": "https://gw.example/anthropic/"},
            "https://gw.example/anthropic/",
        ),
        ({"provider": "bedrock", "region": "ap-south-1"}, "https://bedrock-runtime.ap-south-1.amazonaws.com"),
    ],
)
def test_addresses_are_the_sdk_clients_own(tmp_path: Path, entry: dict[str, Any], url: str) -> None:
    settings = _settings(tmp_path, json.dumps({"endpoints": [{"name": "e", **entry}]}))
    (endpoint,) = resolve_endpoints(settings, {"ANTHROPIC_FOUNDRY_API_KEY": "f"})
    assert endpoint.base_url == url


def test_addresses_match_what_the_installed_sdk_computes() -> None:
    """The SDK's own clients, given no base_url, land on the address Anvil shows."""
    from anthropic import AnthropicFoundry, AnthropicVertex

    vertex = AnthropicVertex(region="us-east5", project_id="p", access_token="t")
    assert str(vertex.base_url).rstrip("/") == providers.default_base_url("vertex", "us-east5", None)
    foundry = AnthropicFoundry(resource="my-res", api_key="k")
    assert str(foundry.base_url) == providers.default_base_url("foundry", None, "my-res")
    pytest.importorskip("botocore")
    from anthropic import AnthropicBedrock

    bedrock = AnthropicBedrock(aws_region="eu-west-3", api_key="k")
    assert str(bedrock.base_url).rstrip("/") == providers.default_base_url("bedrock", "eu-west-3", None)


def test_vertex_project_from_the_environment(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path, json.dumps({"endpoints": [{"name": "v", "provider": "vertex", "region": "global"}]})
    )
    (endpoint,) = resolve_endpoints(settings, {"GOOGLE_CLOUD_PROJECT": "from-gcloud"})
    assert endpoint.project_id == "from-gcloud"
    (endpoint,) = resolve_endpoints(
        settings, {"ANTHROPIC_VERTEX_PROJECT_ID": "a", "GOOGLE_CLOUD_PROJECT": "b"}
    )
    assert endpoint.project_id == "a"
    with pytest.raises(EndpointError, match=r"endpoints\[0\] \(v\): project_id: no Google Cloud project"):
        resolve_endpoints(settings, {})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, r"endpoints\[0\] \(org-a\): api_key_env: the variable KEY_A is not set"),
        ({"KEY_A": SECRET + "\n"}, r"endpoints\[0\] \(org-a\): api_key_env: KEY_A contains whitespace"),
        (
            {"KEY_A": SECRET, "AWS_ACCESS_KEY_ID": "AKIA"},
            r"endpoints\[1\] \(bedrock-east\): AWS credentials: the variable AWS_SECRET_ACCESS_KEY is not",
        ),
    ],
)
def test_resolution_errors_name_the_endpoint_and_the_field_never_the_secret(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    settings = _settings(tmp_path, TWO)
    with pytest.raises(UsageError, match=message) as caught:
        resolve_endpoints(settings, env)
    assert SECRET not in str(caught.value)


# -- the schema: located at the file's line -------------------------------------------------


def test_schema_errors_point_at_the_line(tmp_path: Path) -> None:
    text = """\
    endpoints:
      - name: org-a
        api_key_env: KEY_A
      - name: org-a
        api_key_env: KEY_B
    """
    (dup,) = _problems(tmp_path, text)
    assert dup.endswith(
        "anvil.yaml:4: field 'endpoints[1].name': endpoint name 'org-a' is used twice (first endpoints[0])"
    )
    text = """\
    endpoints:
      - name: org-a
        provider: bedrok
    """
    (provider,) = _problems(tmp_path, text)
    assert "anvil.yaml:3: field 'endpoints[0].provider': Input should be 'anthropic', 'bedrock'" in provider
    text = """\
    endpoints:
      - name: org-a
      - name: org-b
    shared_limits:
      org:
        endpoints:
          - org-a
          - org-c
    """
    (shared,) = _problems(tmp_path, text)
    assert (
        "anvil.yaml:8: field 'shared_limits.org.endpoints[1]': "
        "unknown endpoint 'org-c' (endpoints: org-a, org-b)" in shared
    )


@pytest.mark.parametrize(
    ("entry", "line", "field", "message"),
    [  # the line of the field when the entry has it, else the entry's
        ("provider: bedrock", 2, "region", "a bedrock endpoint needs its region"),
        ("provider: vertex\n    project_id: p", 2, "region", "a vertex endpoint needs its region"),
        ("region: us-east-1", 3, "region", "region applies to bedrock and vertex, not anthropic"),
        (
            "provider: foundry\n    resource: r\n    base_url: https://x",
            5,
            "base_url",
            "its resource or its base_url",
        ),
        ("api_key_env: A\n    auth_token_env: B", 4, "auth_token_env", "not both"),
    ],
)
def test_provider_fields_are_checked(tmp_path: Path, entry: str, line: int, field: str, message: str) -> None:
    (problem,) = _problems(tmp_path, f"endpoints:\n  - name: e\n    {entry}\n")
    assert f"anvil.yaml:{line}: field 'endpoints[0].{field}': " in problem and message in problem


# -- checks before anything runs --------------------------------------------------------------


def test_models_keys_must_be_models(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        json.dumps(
            {
                "endpoints": [
                    {
                        "name": "b",
                        "provider": "bedrock",
                        "region": "us-east-1",
                        "models": {"claude-sonet-9": "x"},
                    }
                ]
            }
        ),
    )
    (endpoint,) = resolve_endpoints(settings, {})
    (finding,) = [f for f in endpoint_errors(settings, (endpoint,)) if "models" in f.path]
    assert finding.path == "endpoints[0].models.claude-sonet-9"
    assert "'claude-sonet-9' is not a model Anvil knows" in finding.message


def test_a_batch_model_an_endpoint_cannot_serve(tmp_path: Path) -> None:
    settings = _settings(tmp_path, TWO)
    endpoints = resolve_endpoints(settings, {"KEY_A": SECRET})
    found = [
        f
        for f in endpoint_errors(settings, endpoints, {"claude-sonnet-5", "claude-haiku-4-5"})
        if "serve" in f.message
    ]
    assert [(f.path, f.message.split(":")[0]) for f in found] == [
        ("endpoints[1]", "endpoints[1] (bedrock-east)")
    ]
    assert "does not serve claude-sonnet-5" in found[0].message and "map it under models:" in found[0].message
    with pytest.raises(UsageError, match="claude-sonnet-5"):
        check_endpoints(settings, endpoints, {"claude-sonnet-5"})
    check_endpoints(settings, endpoints, {"claude-haiku-4-5"})  # served by both


def test_a_missing_extra_names_the_pip_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(providers, "_installed", lambda module: module not in ("boto3", "botocore"))
    settings = _settings(tmp_path, TWO)
    endpoints = resolve_endpoints(settings, {"KEY_A": SECRET})
    (finding,) = endpoint_errors(settings, endpoints)
    assert finding.path == "endpoints[1].provider"
    assert "pip install 'anvil-cli[bedrock]'" in finding.message and "boto3, botocore" in finding.message


def test_vertex_needs_google_auth_only_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(providers, "_installed", lambda module: module != "google.auth")
    assert providers.missing_extra("vertex", has_token=True) is None
    assert "anvil-cli[vertex]" in (providers.missing_extra("vertex", has_token=False) or "")
    assert providers.missing_extra("anthropic", has_token=False) is None


def test_run_refuses_what_validate_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(tmp_path, TWO)
    monkeypatch.delenv("KEY_A", raising=False)
    with pytest.raises(UsageError, match="KEY_A is not set"):
        run_endpoints(settings, RunOptions(batch=tmp_path / "b.jsonl"))
    monkeypatch.setattr(providers, "_installed", lambda module: False)
    with pytest.raises(
        UsageError, match=r"anvil-cli\[bedrock\]"
    ):  # even --simulate: the SDK's client is used
        run_endpoints(settings, RunOptions(batch=tmp_path / "b.jsonl", simulate=True))


def test_run_refuses_a_batch_model_an_endpoint_cannot_serve(tmp_path: Path) -> None:
    settings = _settings(tmp_path, TWO)
    options = RunOptions(batch=_batch(tmp_path, "claude-sonnet-5"), simulate=True)
    with pytest.raises(
        UsageError, match=r"endpoints\[1\] \(bedrock-east\): bedrock does not serve claude-sonnet-5"
    ):
        run_endpoints(settings, options)
    assert (
        len(run_endpoints(settings, RunOptions(batch=_batch(tmp_path, "claude-haiku-4-5"), simulate=True)))
        == 2
    )


def test_simulate_keeps_every_endpoint_without_credentials(tmp_path: Path) -> None:
    text = TWO + "  - {name: v, provider: vertex, region: global}\n"
    settings = _settings(tmp_path, text)
    endpoints = run_endpoints(settings, RunOptions(batch=tmp_path / "b.jsonl", simulate=True))
    assert [(e.name, e.provider) for e in endpoints] == [
        ("org-a", "anthropic"),
        ("bedrock-east", "bedrock"),
        ("v", "vertex"),
    ]
    assert all(e.base_url_from == "the embedded simulator" for e in endpoints)
    assert endpoints[1].api_key and endpoints[2].auth_token and endpoints[2].project_id
    assert endpoints[1].model_id("claude-sonnet-4-6") == "us.anthropic.claude-sonnet-4-6-custom"


# -- anvil validate ---------------------------------------------------------------------------


def _batch(tmp_path: Path, model: str) -> Path:
    path = tmp_path / "batch.jsonl"
    path.write_text(json.dumps({"id": "a", "prompt": "hi", "model": model}) + "\n")
    return path


def test_validate_reports_endpoint_problems_at_their_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _write(tmp_path, TWO)
    monkeypatch.delenv("KEY_A", raising=False)
    result = runner.invoke(app, ["validate", str(_batch(tmp_path, "claude-sonnet-5")), "-c", str(config)])
    assert result.exit_code == 2
    err = result.stderr
    assert (
        f"{config}:4: field 'endpoints[0].api_key_env': "
        "endpoints[0] (org-a): api_key_env: the variable KEY_A is not set" in err
    )
    assert (
        f"{config}:6: field 'endpoints[1]': endpoints[1] (bedrock-east): "
        "bedrock does not serve claude-sonnet-5" in err
    )


def test_validate_passes_and_warns_about_an_exposed_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _write(tmp_path, TWO)
    monkeypatch.setenv("KEY_A", SECRET)  # in this process's environment: the vault did not take it
    for name in (*providers.AWS_KEY_ENV, providers.BEDROCK_KEY_ENV):
        monkeypatch.delenv(name, raising=False)
    result = runner.invoke(
        app, ["validate", str(_batch(tmp_path, "claude-haiku-4-5")), "-c", str(config), "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True
    (warning,) = data["warnings"]
    assert "KEY_A is in the environment of every process Anvil starts" in warning["text"]
    assert SECRET not in result.output


def test_validate_json_is_unchanged_without_endpoints(tmp_path: Path) -> None:
    config = _write(tmp_path, "scaling: {workers: 1}\n")
    result = runner.invoke(
        app, ["validate", str(_batch(tmp_path, "claude-haiku-4-5")), "-c", str(config), "--json"]
    )
    assert result.exit_code == 0 and "warnings" not in json.loads(result.stdout)


def test_validate_warns_that_provider_base_url_applies_to_no_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _write(tmp_path, "provider: {base_url: 'http://proxy:1'}\n" + TWO)
    monkeypatch.setenv("KEY_A", SECRET)
    result = runner.invoke(app, ["validate", str(_batch(tmp_path, "claude-haiku-4-5")), "-c", str(config)])
    assert result.exit_code == 0
    assert f"warning: {config}:1: field 'provider.base_url': applies to no endpoint" in result.stderr
