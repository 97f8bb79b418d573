"""Run the web playground: bind, print the URL (token included) as the first line on stdout, open the browser,
serve until Ctrl-C."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import signal
import socket
import sys
import threading
import webbrowser
from pathlib import Path

from nnctl.errors import NnctlError


def missing_extra() -> NnctlError:
    return NnctlError('nnctl playground --web needs the web extra: pip install "nnctl[web]"')


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def bind(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise NnctlError(f"--port: must be between 0 and 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise NnctlError(f"--host: cannot resolve {host!r}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        hint = "--port 0 picks a free port" if exc.errno == errno.EADDRINUSE else "--host must be an address of this machine"
        raise NnctlError(f"--host/--port: cannot listen on {host}:{port}: {exc.strerror} ({hint})") from None
    sock.listen(64)
    return sock


def page_url(host: str, port: int, token: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/?token={token}"


def quiet_server_class():
    import uvicorn

    class QuietServer(uvicorn.Server):
        """Ctrl-C (or SIGTERM) shuts the server down cleanly, closing the pages' connections, and ends the
        command without re-raising the signal (uvicorn's default), so no traceback is printed.  ``stop`` is
        set by a Ctrl-C that came before the server started: it then stops at once."""

        def __init__(self, config, stop: threading.Event):
            super().__init__(config)
            self.stop = stop

        @contextlib.contextmanager
        def capture_signals(self):
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            if self.stop.is_set():
                self.should_exit = True
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return QuietServer


def run_server(host: str = "127.0.0.1", port: int = 8765, open_browser: bool = True, runs_dir: Path = Path("runs")) -> None:
    try:
        import uvicorn

        from nnctl.playground.web.app import create_app
    except ImportError:
        raise missing_extra() from None
    from threadpoolctl import threadpool_limits

    QuietServer = quiet_server_class()

    # Ctrl-C from the moment the URL is printed stops the server cleanly, even before uvicorn is listening
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        sock = bind(host, port)
        app = create_app(runs_dir=runs_dir)
        url = page_url(host, sock.getsockname()[1], app.state.playground.token)
        if not is_loopback(host):
            print(
                f"warning: --host {host} makes the playground reachable from other machines; anyone with the URL "
                "(it holds the token) can train and save runs here",
                file=sys.stderr,
                flush=True,
            )
        print(url, flush=True)
        print("nnctl playground: serving the page; Ctrl-C stops the server", file=sys.stderr, flush=True)
        if open_browser:
            threading.Timer(0.5, webbrowser.open, args=(url,)).start()
        config = uvicorn.Config(app, log_level="warning", ws_max_size=app.state.max_message, lifespan="on")
        with threadpool_limits(1):  # as nnctl train: one BLAS thread is fastest on these small matrices
            QuietServer(config, stop).run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("nnctl playground: stopped", file=sys.stderr)
