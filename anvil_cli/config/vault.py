"""Secrets held in memory, never in a process's environment.

`/proc/<pid>/environ` shows the environment a process was *started* with: deleting a variable
from `os.environ` later does not erase it there, and every child started before the deletion
inherits it. So an `anvil` command started with the API key or the control token in its
environment hands them to a fresh exec of itself over a pipe (`hand_over`), and that process,
started without them, keeps them here (`secret`). No Anvil process (conductor, fork server,
workers, the governor's Manager, the embedded simulator, tools) then has a secret in its
environment or on its command line.

Which variables are secrets: the fixed `SECRET_ENV` (ANTHROPIC_API_KEY, ANTHROPIC_AUTH_TOKEN,
ANTHROPIC_CUSTOM_HEADERS, ANVIL_API_TOKEN), and every variable an endpoint of the `endpoints:`
section reads its credential from (`providers.credential_variables`: the `api_key_env` and
`auth_token_env` it names, else its provider's usual ones: ANTHROPIC_FOUNDRY_API_KEY, or
AWS_BEARER_TOKEN_BEDROCK and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN for
Bedrock), and every variable an `alerts.webhooks` entry reads its URL or a header from
(`url_env`, `headers`). The settings are not loaded yet when this runs, so
`configured_secret_names` reads the same sources they are loaded from: the `--config`/`-c` file
of the command line (else ./anvil.yaml) and the `ANVIL_ENDPOINTS...` and `ANVIL_ALERTS...`
variables. No name pattern is guessed: a tool that
needs its own `SERPAPI_API_KEY` still gets it. `anvil validate` warns about a credential
variable still in its environment (a config it could not read here, or not Linux).

Every Anvil process also marks itself not dumpable (`PR_SET_DUMPABLE` 0): its `/proc/<pid>/`
files (`environ`, `mem`, `cmdline`'s neighbours) become root's, and same-user processes can
neither read them nor attach a debugger. A root user can still read them: for that, tools run
in a sandbox that does not see Anvil's processes (`engine.sandbox`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import sys
from collections.abc import Mapping

from anvil_cli.jobs.toolspec import SECRET_ENV

FD_VAR = "ANVIL_SECRETS_FD"  # the inherited pipe the secrets arrive on (a number, not a secret)
_PIPE_SAFE_BYTES = 60_000  # written before exec: must fit the pipe's buffer (64 KiB on Linux)
_PR_SET_DUMPABLE = 4

_held: dict[str, str] = {}
# what every process needs, never a credential: a mistaken `api_key_env: PATH` must not take it away
_NEVER_HELD = frozenset({"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TMPDIR", "PWD", "TERM"})


def hand_over(environ: Mapping[str, str] | None = None) -> None:
    """Called first by the `anvil` command. If this process was started with secrets in its
    environment, exec the same command again without them, the secrets on a pipe; if it is that
    second process, take them from the pipe. Returns only when the environment holds none."""
    env = os.environ if environ is None else environ
    if FD_VAR in env:
        _receive(env[FD_VAR])
        return
    names = (*SECRET_ENV, *configured_secret_names(sys.argv[1:], env))
    found = {name: env[name] for name in names if name in env}
    if not found or not sys.platform.startswith("linux"):
        return
    payload = json.dumps(found).encode()
    if len(payload) > _PIPE_SAFE_BYTES:  # nothing real is this large; keep them rather than hang
        return
    read_end, write_end = os.pipe()
    os.write(write_end, payload)
    os.close(write_end)
    os.set_inheritable(read_end, True)
    child_env = {k: v for k, v in env.items() if k not in found}
    child_env[FD_VAR] = str(read_end)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, child_env)


def _receive(fd_text: str) -> None:
    os.environ.pop(FD_VAR, None)  # children need not know; the number itself is harmless
    try:
        fd = int(fd_text)
    except ValueError:
        return
    chunks: list[bytes] = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        os.close(fd)
    except OSError:  # not our pipe (a stale variable): no secrets came
        return
    try:
        received = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        return
    if isinstance(received, dict):
        _held.update({k: v for k, v in received.items() if isinstance(k, str) and isinstance(v, str)})
    for name in (*SECRET_ENV, *_held):  # a variable set again after the hand-over must not be passed on
        os.environ.pop(name, None)


def configured_secret_names(argv: list[str], env: Mapping[str, str]) -> tuple[str, ...]:
    """The variables the `endpoints:` of this command's settings read credentials from (see the
    module's docstring). A file that cannot be read or parsed names none: loading the settings
    reports it."""
    from pathlib import Path

    path = _config_arg(argv)
    if path is None and Path("anvil.yaml").is_file():
        path = "anvil.yaml"
    text = b""
    if path is not None:
        with contextlib.suppress(OSError):
            text = Path(path).read_bytes()
    from_env = any(name.startswith(("ANVIL_ENDPOINTS", "ANVIL_ALERTS")) for name in env)
    if b"endpoints" not in text and b"webhooks" not in text and not from_env:  # the common case
        return ()
    from anvil_cli.config.providers import credential_variables
    from anvil_cli.config.sources import merge_layers, read_env_layer, read_file_layer

    layers = [read_file_layer(Path(path))] if path is not None else []  # as load_settings reads them
    merged = merge_layers([*layers, read_env_layer(env, {"endpoints", "alerts"})])  # the schema: not yet
    entries = merged.values.get("endpoints")
    names: list[str] = []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict):
            fields = [entry.get(k) for k in ("provider", "api_key_env", "auth_token_env")]
            provider, key_env, token_env = (f if isinstance(f, str) else None for f in fields)
            names.extend(credential_variables(provider or "anthropic", key_env, token_env))
    names.extend(_webhook_variables(merged.values.get("alerts")))
    return tuple(
        dict.fromkeys(n for n in names if n and "=" not in n and "\x00" not in n and n not in _NEVER_HELD)
    )


def _webhook_variables(alerts: object) -> list[str]:
    """The variables `alerts.webhooks` entries read their URL (`url_env`) and header values from."""
    hooks = alerts.get("webhooks") if isinstance(alerts, dict) else None
    names: list[str] = []
    for hook in hooks if isinstance(hooks, list) else []:
        if isinstance(hook, dict):
            headers = hook.get("headers")
            values = [hook.get("url_env"), *(headers.values() if isinstance(headers, dict) else ())]
            names.extend(v for v in values if isinstance(v, str))
    return names


def _config_arg(argv: list[str]) -> str | None:
    """The value of `--config FILE`, `--config=FILE`, `-c FILE` or `-cFILE` (the last one given)."""
    found = None
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg in ("--config", "-c") and i + 1 < len(argv):
            found = argv[i + 1]
        elif arg.startswith("--config="):
            found = arg.partition("=")[2]
        elif arg.startswith("-c") and not arg.startswith("--") and len(arg) > 2:
            found = arg[2:]
    return found


def secret(name: str) -> str | None:
    """A secret handed over at start, else the variable of this process's environment (a
    process not started by the `anvil` command: tests, embedding programs)."""
    return _held.get(name) or os.environ.get(name)


def environ_with_secrets() -> dict[str, str]:
    """This process's environment as the user set it: its variables plus the secrets held."""
    merged = dict(os.environ)
    merged.update(_held)
    return merged


def set_not_dumpable() -> None:
    """Close this process's /proc files and ptrace to other processes of the same user (Linux;
    elsewhere nothing). Inherited by forked children; an exec'd program (a tool) starts afresh."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: nothing to close
        pass
