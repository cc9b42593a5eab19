"""`anvil run --serve`: the run's HTTP control API. Its address, token and socket are made sure
of before anything is written (`listen_for_api`); once the run is open, the server starts in a
thread of the conductor process and says where it is (`start_api`)."""

from __future__ import annotations

import socket
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from anvil_cli.config.settings import Settings
from anvil_cli.config.vault import environ_with_secrets
from anvil_cli.engine.journal.store import journal_path
from anvil_cli.session.control import RunControl


@dataclass
class Listening:
    """The API's address, token and bound socket, made sure of before any run is written."""

    host: str
    sock: socket.socket
    token: str
    generated: bool


def listen_for_api(settings: Settings, serve: tuple[str, int], stack: ExitStack) -> Listening:
    """A refusal here (a public address without a token, a port in use) writes nothing."""
    from anvil_cli.views.api.address import require_loopback
    from anvil_cli.views.api.auth import TOKEN_ENV, resolve_token
    from anvil_cli.views.api.server import listen

    host, port = serve
    environ = environ_with_secrets()
    if not environ.get(TOKEN_ENV, "").strip():
        require_loopback(host)  # a generated token is for loopback only: refused before any file
    sock = listen(host, port)  # a port in use is refused before the token file is written too
    stack.callback(sock.close)
    token, generated = resolve_token(settings.state_dir, host, environ)
    return Listening(host, sock, token, generated)


def start_api(settings: Settings, run_id: str, at: Listening, stack: ExitStack) -> RunControl:
    """The HTTP control API of this run, in a thread of the conductor process."""
    from anvil_cli.views.api.server import ApiServer

    control = RunControl(
        journal_path(settings.state_dir),
        run_id,
        agent_min=settings.scaling.min_agents,
        agent_max=settings.scaling.agent_limit(),
        extra_models=list(settings.prices),
    )
    stack.callback(control.close)
    port = at.sock.getsockname()[1]
    server = ApiServer(control, at.host, port, at.token, allow_remote=not at.generated).start(at.sock)
    stack.callback(server.stop)
    for line in _api_lines(server.url, at, settings.state_dir / "api_token", sys.stderr.isatty()):
        print(line, file=sys.stderr, flush=True)  # the user's own screen: never the journal or a log
    return control


def _api_lines(url: str, at: Listening, token_file: Path, tty: bool) -> list[str]:
    """Where the dashboard and the API are. The token rides in the address's fragment
    (`#token=`), which a browser never sends to the server. A generated token is shown this once
    (it is also in its 0600 file); the user's own ANVIL_API_TOKEN is echoed only to a terminal,
    never to a CI log or a file stderr was sent to."""
    api = f"control API at {url} (Authorization: Bearer <token>)"
    if at.generated:
        note = f"(the token is shown once; also in {token_file}, mode 0600)"
        return [f"dashboard at {url}/#token={at.token} {note}", api]
    if tty:
        return [f"dashboard at {url}/#token={at.token}", api]
    return [f"dashboard at {url}/ (it asks for the token: ANVIL_API_TOKEN)", api]
