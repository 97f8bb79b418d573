"""``nnctl playground --web``: the Playground as a web page, trained live by this server.

Routes (every one needs the token, as Jupyter's: ``?token=T`` in the URL, or the cookie the page sets, or the
header ``X-Nnctl-Token``; without it: 403):

- ``GET /?token=T``: the page (``static/index.html``); ``GET /static/<file>``: its script and style.
- ``GET /model.npz?session=ID``: the current weights of a page's session as an nnctl checkpoint
  (``nnctl eval``/``predict`` read it).
- ``WS /ws?token=T``: one per page.  JSON messages both ways; each page gets its own session, trained in its own
  worker thread, and closing the page stops it.

Client to server: ``hello {hash}`` (first; the URL hash, TensorFlow Playground keys and nnctl's), ``set
{changes: {hash key: value}}``, ``play``, ``pause``, ``step``, ``reset``, ``regenerate``, ``focus {node: "L:i" |
null}``, ``edit {kind: weight, layer, from, to, value}`` / ``{kind: bias, layer, unit, value}``, ``upload {name,
text}``, ``import {yaml}``, ``export``, ``save_run``.

Server to client: ``state`` (after hello and every rebuild: the hash, options, network, points, extent,
history), ``frame`` (at least 10 a second while playing, and after every change: epoch, metrics, the heatmap
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

from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from nnctl.playground.web.page import MAX_UPLOAD, Page, error

COOKIE = "nnctl_playground_token"
STATIC = Path(str(resources.files("nnctl.playground.web") / "static"))
STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}
#: how long a playing page trains between two frames (15 frames a second)
FRAME_SECONDS = 1 / 15
#: a WebSocket message larger than this is refused (an upload is at most MAX_UPLOAD of text, sent as JSON)
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
        given = connection.query_params.get("token") or connection.headers.get("x-nnctl-token") or connection.cookies.get(COOKIE) or ""
        return secrets.compare_digest(given.encode("utf-8", "replace"), self.token.encode("utf-8"))

    def close(self) -> None:
        shutil.rmtree(self.uploads_dir, ignore_errors=True)


def create_app(token: str | None = None, runs_dir: Path = Path("runs")) -> Starlette:
    """The app; ``app.state.playground`` holds the token (random unless given) and the open pages."""
    playground = Playground(token or secrets.token_urlsafe(24), runs_dir)

    async def page(request: Request) -> Response:
        if not playground.allowed(request):
            return PlainTextResponse(FORBIDDEN, status_code=403)
        response = FileResponse(STATIC / "index.html", media_type="text/html", headers={"Cache-Control": "no-store"})
        response.set_cookie(COOKIE, playground.token, httponly=True, samesite="strict")
        return response

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
        data = await asyncio.get_running_loop().run_in_executor(page_.worker, page_.session.checkpoint_bytes)
        name = f"{page_.session.config.name}-epoch{page_.session.epoch}.npz"
        return Response(data, media_type="application/octet-stream", headers={"Content-Disposition": f'attachment; filename="{name}"'})

    async def websocket(ws: WebSocket) -> None:
        if not playground.allowed(ws):
            await ws.close(code=1008, reason="the token is missing or wrong")
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
            if len(text) > MAX_MESSAGE:
                await send([error(f"a message of {len(text)} bytes is too large (uploads: at most {MAX_UPLOAD // 2**20} MB)")])
                continue
            try:
                message = json.loads(text)
            except json.JSONDecodeError:
                await send([error("a message that is not JSON")])
                continue
            await send(await loop.run_in_executor(page.worker, page.handle, message))
    except WebSocketDisconnect:
        pass
    finally:
        training.cancel()
        page.running = False
        playground.pages.pop(page.id, None)
        page.worker.shutdown(wait=False, cancel_futures=True)
