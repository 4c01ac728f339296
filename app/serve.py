"""`python -m app.serve`: the memory proxy's server process (the Procfile's `memory:` line).

It reads the settings and binds the listening socket before uvicorn starts, so a bad
`MEMORY_PORT` or a port already taken is one clear line naming the variable, and the lifespan's
"ready" line comes only once the socket is the proxy's. The server is uvicorn with the
slow-client protocol (app.slowclients), no access log and 20 s for requests in flight at stop.
"""

from __future__ import annotations

import errno
import json
import socket
import sys
import urllib.request

import uvicorn

from app.config import ConfigError, Settings, load_settings
from app.main import configure_logging, create_app, log_level
from app.slowclients import TimedHttpToolsProtocol

GRACEFUL_SHUTDOWN_SECONDS = 20
PROBE_TIMEOUT = 2.0


class PortTaken(Exception):
    """The address the settings name is already bound by another process."""


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (SO_REUSEADDR, as uvicorn binds); PortTaken if it is in use."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = found[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortTaken(address) from None
        raise
    sock.listen(2048)  # uvicorn's default backlog
    return sock


def memory_proxy_at(host: str, port: int) -> bool:
    """True when what listens on host:port answers /health as a Memory Proxy does."""
    url_host = f"[{host}]" if ":" in host else host
    try:
        with urllib.request.urlopen(f"http://{url_host}:{port}/health", timeout=PROBE_TIMEOUT) as resp:
            body = json.loads(resp.read())
            return resp.headers.get("x-request-id") is not None and body.get("status") in ("healthy", "degraded")
    except (OSError, ValueError, AttributeError):
        return False


def port_taken_message(settings: Settings) -> str:
    """Why the proxy cannot start on its port, and what to change."""
    where = f"{settings.host}:{settings.port}"
    if memory_proxy_at(settings.host, settings.port):
        who = f"a Memory Proxy already listens there (http://{where}): use that one, or stop it first"
    else:
        who = "another program listens there (not a Memory Proxy)"
    return (
        f"memory proxy: cannot listen on {where} (MEMORY_PORT={settings.port}): the port is in use; {who}. "
        "To run another copy beside it, set MEMORY_PORT (and LITELLM_PORT) to free ports in .env or the environment."
    )


def main() -> int:
    """Check the settings, bind the port, then serve until stopped."""
    configure_logging()
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"memory proxy: configuration error: {exc}", file=sys.stderr)
        return 1
    try:
        sock = bind(settings.host, settings.port)
    except PortTaken:
        print(port_taken_message(settings), file=sys.stderr)
        return 1
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        http=TimedHttpToolsProtocol,
        access_log=False,
        log_level=log_level(),
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
