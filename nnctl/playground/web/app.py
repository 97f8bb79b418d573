"""``nnctl playground --web``: the Playground as a web page, trained live by this server.

Routes (every one needs the token, as Jupyter's: ``?token=T`` in the URL or the header ``X-Nnctl-Token``;
without it: 403).  No cookie holds it: cookies are shared by every port of a host, so another local server
would receive it.

- ``GET /?token=T``: the page (``static/index.html``, its script and style linked with the token);
  ``GET /static/<file>?token=T``: the script and the style.
- ``GET /model.npz?session=ID``: the current weights of a page's session as an nnctl checkpoint
  (``nnctl eval``/``predict`` read it).
- ``WS /ws?token=T``: one per page; refused when its ``Origin`` is another site than the page's.  JSON
  messages both ways; each page gets its own session, trained in its own worker thread, and closing the page
  stops it and deletes its upload.

Client to server: ``hello {hash}`` (first; the URL hash, TensorFlow Playground keys and nnctl's), ``set
{changes: {hash key: value}}``, ``play``, ``pause``, ``step``, ``reset``, ``regenerate``, ``focus {node: "L:i" |
null}``, ``edit {kind: weight, layer, from, to, value}`` / ``{kind: bias, layer, unit, value}``, ``upload {name,
text}``, ``import {yaml}``, ``export``, ``save_run``.

Server to client: ``state`` (after hello and every rebuild: the hash, options, network, points, extent,
history), ``frame`` (while playing, one after every FRAME_SECONDS of training, and after every change: epoch,
metrics, the heatmap
and each neuron's as base64 bytes b = round((v + 1) * 127.5), weights, confusion matrix), ``error {message}``,
``yaml {text, filename}``, ``saved {path, message}``.  ``page.py`` builds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from nnctl.playground.web.page import MAX_UPLOAD, Page, error

STATIC = Path(str(resources.files("nnctl.playground.web") / "static"))
STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}
#: how long a playing page trains between two frames (15 frames a second)
FRAME_SECONDS = 1 / 15
#: uvicorn closes a WebSocket whose message is larger than this (an upload is at most MAX_UPLOAD of text, in JSON)
MAX_MESSAGE = 2 * MAX_UPLOAD + 65536

FORBIDDEN = (
    "nnctl playground: this address needs the token that `nnctl playground --web` printed; "
    "open the full URL it printed (with ?token=...)\n"
)


class Playground:
    """The server's state: its token, where runs and uploads go, and the open pages."""

    def __init__(self, token: str, runs_dir: Path):
        self.token = token
        self.runs_dir = Path(runs_dir)
        self.uploads_dir = Path(tempfile.mkdtemp(prefix="nnctl-playground-"))
        self.pages: dict[str, Page] = {}

    def allowed(self, connection: HTTPConnection) -> bool:
        given = connection.query_params.get("token") or connection.headers.get("x-nnctl-token") or ""
        return secrets.compare_digest(given.encode("utf-8", "replace"), self.token.encode("utf-8"))

    def same_origin(self, connection: HTTPConnection) -> bool:
        """A browser says which page opened a WebSocket: it must be this server's own (or none, outside a browser)."""
        origin = connection.headers.get("origin")
        return origin is None or urlsplit(origin).netloc == connection.headers.get("host", "")

    def close(self) -> None:
        shutil.rmtree(self.uploads_dir, ignore_errors=True)


def create_app(token: str | None = None, runs_dir: Path = Path("runs")) -> Starlette:
    """The app; ``app.state.playground`` holds the token (random unless given) and the open pages."""
    playground = Playground(token or secrets.token_urlsafe(24), runs_dir)

    async def page(request: Request) -> Response:
        if not playground.allowed(request):
            return PlainTextResponse(FORBIDDEN, status_code=403)
        html = (STATIC / "index.html").read_text(encoding="utf-8")
        for name in ("static/style.css", "static/app.js"):
            html = html.replace(f'"{name}"', f'"{name}?token={playground.token}"')
        return HTMLResponse(html, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if not playground.allowed(request):
            return PlainTextResponse(FORBIDDEN, status_code=403)
        if name not in STATIC_FILES:
            return PlainTextResponse("not found\n", status_code=404)
        return FileResponse(STATIC / name, media_type=STATIC_FILES[name], headers={"Cache-Control": "no-store"})

    async def model(request: Request) -> Response:
        if not playground.allowed(request):
            return PlainTextResponse(FORBIDDEN, status_code=403)
        page_ = playground.pages.get(request.query_params.get("session", ""))
        if page_ is None or page_.session is None:
            return PlainTextResponse("no such session: open the page again\n", status_code=404)
        data, name = await asyncio.get_running_loop().run_in_executor(page_.worker, page_.download)
        return Response(data, media_type="application/octet-stream", headers={"Content-Disposition": f'attachment; filename="{name}"'})

    async def websocket(ws: WebSocket) -> None:
        if not playground.allowed(ws) or not playground.same_origin(ws):
            await ws.close(code=1008, reason="the token is missing or wrong, or the page is another site's")
            return
        await ws.accept()
        await serve_page(ws, playground)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        playground.close()

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/static/{name}", static),
            Route("/model.npz", model),
            WebSocketRoute("/ws", websocket),
        ],
        lifespan=lifespan,
    )
    app.state.playground = playground
    app.state.max_message = MAX_MESSAGE
    return app


async def serve_page(ws: WebSocket, playground: Playground) -> None:
    """One page: its messages and its training, both on the page's own worker thread (so the session is
    never touched by two threads), frames sent as they come; the page closes -> its training stops."""
    page = Page(playground.runs_dir, playground.uploads_dir, secrets.token_hex(8))
    page.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"playground-{page.id}")
    playground.pages[page.id] = page
    loop = asyncio.get_running_loop()
    sending = asyncio.Lock()

    async def send(messages: list[dict]) -> None:
        async with sending:
            for message in messages:
                try:
                    await ws.send_text(json.dumps(message, allow_nan=False))
                except (WebSocketDisconnect, RuntimeError):  # the page closed while a reply was on its way
                    raise WebSocketDisconnect(code=1001) from None

    async def train() -> None:
        while True:
            frame = await loop.run_in_executor(page.worker, page.train_for, FRAME_SECONDS)
            if frame is None:
                await asyncio.sleep(0.05)
            else:
                await send([frame])

    async def train_quietly() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            await train()

    training = asyncio.create_task(train_quietly())
    try:
        while True:
            text = await ws.receive_text()
            try:
                message = json.loads(text)
            except (json.JSONDecodeError, RecursionError):
                await send([error("a message that is not JSON (or nested too deeply)")])
                continue
            await send(await loop.run_in_executor(page.worker, page.handle, message))
    except WebSocketDisconnect:
        pass
    finally:
        training.cancel()
        playground.pages.pop(page.id, None)
        page.worker.submit(page.close)  # after whatever the worker is doing for the page
        page.worker.shutdown(wait=False, cancel_futures=False)
