"""Running the dashboard: a token, a socket bound before the address is printed (port 0: a free
one), uvicorn serving the app on it."""
from __future__ import annotations

import secrets
import socket

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def new_token() -> str:
    return secrets.token_urlsafe(24)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url(host: str, port: int, token: str) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/?token={token}"


def serve(store_root, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
          ready=None) -> None:
    """Serve until interrupted; `ready(url)` is called once the server accepts connections."""
    import asyncio

    import uvicorn

    from pushbutton.ui.app import create_app
    token = token or new_token()
    sock = bind(host, port)
    address = url(host, sock.getsockname()[1], token)
    app = create_app(store_root, token)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=1, ws="none")
    server = uvicorn.Server(config)

    async def main():
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started and ready:
            ready(address)
        await task
    asyncio.run(main())
