"""Serving `seg ui`: bind first (a port in use is one clear line), a token when the address is
reachable from other machines, then uvicorn on the bound socket."""

from __future__ import annotations

import errno
import ipaddress
import secrets
import socket
from collections.abc import Callable

from seg import fs as segfs
from seg.errors import ConfigError, ResourceError
from seg.ui.app import create_app
from seg.ui.roots import Roots

LOOPBACK = {"localhost"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ResourceError(
                f"port {port} on {host} is in use (another seg ui?); choose another with --port"
            ) from None
        raise ResourceError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(64)
    return sock


def serve(
    roots: Roots,
    *,
    host: str,
    port: int,
    ready: Callable[[str], None],
    scheduler: str | None = None,
) -> None:
    """Serve until interrupted; `ready(url)` once listening (the URL carries the token)."""
    import uvicorn

    if not segfs.exists(roots.runs):
        raise ConfigError(f"--runs {roots.runs} does not exist; create it or name another")
    for flag, folder in (("--predictions", roots.predictions), ("--scenes", roots.scenes)):
        if folder and not segfs.exists(folder):
            raise ConfigError(f"{flag} {folder} does not exist; name an existing folder")
    token = None if is_loopback(host) else secrets.token_urlsafe(18)
    sock = bind(host, port)
    app = create_app(roots, token, scheduler=scheduler)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{sock.getsockname()[1]}/" + (f"?token={token}" if token else "")
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    ready(url)
    server.run(sockets=[sock])
