"""``nnctl data fetch``: download, verify, retry and resume, against a real HTTP server on 127.0.0.1.

Each test gets its own server (a background thread) serving small fake files under the MNIST names; the
tests pass those files' SHA-256 through ``fetch(files=...)``. The server counts requests per file, records
their Range headers, answers ``Range: bytes=N-`` with 206 Partial Content (unless told to ignore Range),
and can drop a file's connection after K bytes while announcing the full Content-Length.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import nnctl
from nnctl.data import fetch as fetch_module
from nnctl.data.fetch import SOURCES, cache_dir, fetch
from nnctl.errors import NnctlError

SIZES = {
    "train-images-idx3-ubyte.gz": 300_000,
    "train-labels-idx1-ubyte.gz": 20_000,
    "t10k-images-idx3-ubyte.gz": 150_000,
    "t10k-labels-idx1-ubyte.gz": 9_000,
}
BIG = "train-images-idx3-ubyte.gz"  # the first file fetch downloads
DROP_AT = 100_000
NO_SLEEP = lambda attempt: 0  # noqa: E731
PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


class FakeMirror:
    """State shared by the test and the server's request handlers."""

    def __init__(self, root: Path, data: dict[str, bytes]):
        self.root = root
        self.data = data
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.log: list[tuple[str, str | None]] = []  # (file name, Range header) per request
        self.drops: dict[str, list] = {}  # name -> [K, remaining times or None for always]
        self.ignore_range = False
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def manifest(self) -> dict[str, str]:
        return {name: hashlib.sha256(body).hexdigest() for name, body in self.data.items()}

    def drop(self, name: str, after: int, always: bool = False) -> None:
        self.drops[name] = [after, None if always else 1]

    def ranges(self, name: str) -> list[str | None]:
        return [rng for n, rng in self.log if n == name]

    def total_requests(self) -> int:
        return sum(self.requests.values())


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format, *args):  # silence the server
        pass

    def do_GET(self):
        state: FakeMirror = self.server.state
        name = self.path.lstrip("/")
        rng = self.headers.get("Range")
        with state.lock:
            state.requests[name] += 1
            state.log.append((name, rng))
            drop = None
            spec = state.drops.get(name)
            if spec is not None and (spec[1] is None or spec[1] > 0):
                drop = spec[0]
                if spec[1] is not None:
                    spec[1] -= 1
        path = state.root / name
        if not name or "/" in name or not path.is_file():
            self.send_error(404, "Not Found")
            return
        data = path.read_bytes()
        start, status = 0, 200
        if rng and not state.ignore_range:
            match = re.fullmatch(r"bytes=(\d+)-", rng.strip())
            if match:
                start = int(match[1])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if drop is not None:  # announce the full length, send K bytes, hang up
            self.wfile.write(body[:drop])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client hanging up is not worth a traceback
        pass


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv(fetch_module.MIRROR_ENV, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    root = tmp_path / "served"
    root.mkdir()
    rng = random.Random(1234)
    data = {name: rng.randbytes(size) for name, size in SIZES.items()}
    for name, body in data.items():
        (root / name).write_bytes(body)
    state = FakeMirror(root, data)
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.state = state
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def _fetch(mirror: FakeMirror, folder: Path, **kwargs):
    kwargs.setdefault("files", mirror.manifest())
    kwargs.setdefault("backoff", NO_SLEEP)
    kwargs.setdefault("timeout", 5.0)
    return fetch("mnist", folder=folder, mirror=mirror.url, **kwargs)


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.part")) if folder.exists() else []


class Recorder(fetch_module.ProgressHook):
    def __init__(self):
        self.starts, self.finished, self.received = [], [], 0

    def start(self, name, total, done):
        self.starts.append((name, total, done))

    def advance(self, n):
        self.received += n

    def finish(self, name, status):
        self.finished.append((name, status))


# --- success and the second, no-op fetch ------------------------------------------------------------------


def test_fetch_downloads_every_file_and_verifies_it(mirror, tmp_path):
    folder = tmp_path / "cache"
    hook = Recorder()
    results = _fetch(mirror, folder, progress=hook)

    assert [(path.name, status) for path, status in results] == [(name, "downloaded") for name in SIZES]
    for path, _ in results:
        assert path.parent == folder
        assert path.read_bytes() == mirror.data[path.name]
    assert _parts(folder) == []
    assert sorted(p.name for p in folder.iterdir()) == sorted(SIZES)
    assert mirror.requests == Counter({name: 1 for name in SIZES})
    assert all(rng is None for _, rng in mirror.log)  # nothing to resume: no Range header
    assert hook.received == sum(SIZES.values())
    assert [(name, total, done) for name, total, done in hook.starts] == [(n, s, 0) for n, s in SIZES.items()]
    assert hook.finished == [(name, "downloaded") for name in SIZES]


def test_second_fetch_downloads_nothing(mirror, tmp_path):
    folder = tmp_path / "cache"
    _fetch(mirror, folder)
    before = mirror.total_requests()
    assert before == len(SIZES)

    results = _fetch(mirror, folder)
    assert mirror.total_requests() == before
    assert [(path.name, status) for path, status in results] == [(name, "verified") for name in SIZES]
    for path, _ in results:
        assert path.read_bytes() == mirror.data[path.name]


def test_a_corrupted_final_file_is_downloaded_again(mirror, tmp_path):
    folder = tmp_path / "cache"
    _fetch(mirror, folder)
    (folder / BIG).write_bytes(b"not the file")

    results = dict((path.name, status) for path, status in _fetch(mirror, folder))
    assert results[BIG] == "downloaded"
    assert [s for n, s in results.items() if n != BIG] == ["verified"] * (len(SIZES) - 1)
    assert (folder / BIG).read_bytes() == mirror.data[BIG]
    assert mirror.requests[BIG] == 2


# --- checksum ---------------------------------------------------------------------------------------------


def test_checksum_mismatch_raises_and_keeps_nothing(mirror, tmp_path):
    folder = tmp_path / "cache"
    manifest = mirror.manifest()
    manifest[BIG] = "0" * 64

    with pytest.raises(NnctlError) as info:
        _fetch(mirror, folder, files=manifest)
    message = str(info.value)
    assert "SHA-256 mismatch" in message
    assert BIG in message
    assert mirror.requests[BIG] == 1  # it was downloaded, then rejected
    assert not (folder / BIG).exists()
    assert _parts(folder) == []


# --- dropped connections, resume -------------------------------------------------------------------------


def test_dropped_connection_is_resumed_with_a_range_request(mirror, tmp_path):
    folder = tmp_path / "cache"
    mirror.drop(BIG, DROP_AT)  # first request only
    hook = Recorder()

    results = _fetch(mirror, folder, retries=2, progress=hook)

    assert dict((p.name, s) for p, s in results)[BIG] == "downloaded"
    assert mirror.ranges(BIG) == [None, f"bytes={DROP_AT}-"]
    assert (folder / BIG).read_bytes() == mirror.data[BIG]
    assert hashlib.sha256((folder / BIG).read_bytes()).hexdigest() == mirror.manifest()[BIG]
    assert _parts(folder) == []
    big_starts = [(total, done) for name, total, done in hook.starts if name == BIG]
    assert big_starts == [(SIZES[BIG], 0), (SIZES[BIG], DROP_AT)]


def test_connection_dropped_every_time_keeps_the_part_and_a_later_fetch_resumes_it(mirror, tmp_path):
    folder = tmp_path / "cache"
    mirror.drop(BIG, DROP_AT, always=True)

    with pytest.raises(NnctlError) as info:
        _fetch(mirror, folder, retries=1)
    assert "download failed after 2 attempts" in str(info.value)
    assert mirror.requests[BIG] == 2
    assert mirror.ranges(BIG) == [None, f"bytes={DROP_AT}-"]
    assert not (folder / BIG).exists()
    part = folder / (BIG + ".part")
    assert part.is_file()
    kept = part.read_bytes()
    assert len(kept) == 2 * DROP_AT
    assert kept == mirror.data[BIG][: len(kept)]

    mirror.drops.clear()  # the server is healthy again
    results = _fetch(mirror, folder, retries=1)
    assert dict((p.name, s) for p, s in results)[BIG] == "downloaded"
    assert mirror.ranges(BIG)[-1] == f"bytes={len(kept)}-"
    assert (folder / BIG).read_bytes() == mirror.data[BIG]
    assert _parts(folder) == []


def test_server_ignoring_range_restarts_from_zero(mirror, tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    stale = mirror.data[BIG][:50_000]
    (folder / (BIG + ".part")).write_bytes(stale)
    mirror.ignore_range = True

    results = _fetch(mirror, folder, retries=0)

    assert dict((p.name, s) for p, s in results)[BIG] == "downloaded"
    assert mirror.ranges(BIG) == [f"bytes={len(stale)}-"]  # it asked to resume, got the whole file
    final = (folder / BIG).read_bytes()
    assert len(final) == SIZES[BIG]
    assert final == mirror.data[BIG]
    assert _parts(folder) == []


def test_a_complete_part_file_is_finished(mirror, tmp_path):
    """A complete, verified .part (say the process died before the rename) is moved into place without a request."""
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / (BIG + ".part")).write_bytes(mirror.data[BIG])

    results = _fetch(mirror, folder, retries=2)

    assert dict((p.name, s) for p, s in results)[BIG] == "downloaded"
    assert mirror.requests.get(BIG, 0) == 0
    assert (folder / BIG).read_bytes() == mirror.data[BIG]
    assert _parts(folder) == []


# --- HTTP errors ------------------------------------------------------------------------------------------


def test_http_404_is_a_clear_error(mirror, tmp_path):
    folder = tmp_path / "cache"
    manifest = {"missing-file.gz": "0" * 64, **mirror.manifest()}

    with pytest.raises(NnctlError) as info:
        _fetch(mirror, folder, files=manifest, retries=3)
    message = str(info.value)
    assert "HTTP 404" in message
    assert "--mirror" in message
    assert "missing-file.gz" in message
    assert mirror.requests["missing-file.gz"] == 1  # a 404 is not retried
    assert not (folder / "missing-file.gz").exists()
    assert _parts(folder) == []


def test_unknown_dataset_in_process(tmp_path):
    with pytest.raises(NnctlError, match="unknown dataset"):
        fetch("cifar", folder=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


# --- the real CLI -----------------------------------------------------------------------------------------


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def test_cli_fetch_rejects_files_that_do_not_match_the_manifest(mirror, tmp_path):
    folder = tmp_path / "data"
    result = nnctl("data", "fetch", "mnist", "--dir", folder, "--mirror", mirror.url, timeout=60)

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = _error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert "SHA-256 mismatch" in errors[0]
    assert mirror.requests[BIG] == 1
    for name in SOURCES["mnist"]["files"]:
        assert not (folder / name).exists()
    assert _parts(folder) == []


def test_cli_fetch_unknown_dataset(tmp_path):
    result = nnctl("data", "fetch", "cifar", env={"XDG_CACHE_HOME": str(tmp_path / "xdg")}, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = _error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert "unknown dataset" in errors[0]
    assert not (tmp_path / "xdg").exists()


def test_cli_fetch_honours_the_mirror_environment_variable(mirror, tmp_path):
    folder = tmp_path / "data"
    result = nnctl("data", "fetch", "mnist", "--dir", folder, env={"NNCTL_DATA_MIRROR": mirror.url}, timeout=60)

    assert mirror.requests[BIG] == 1, result.stderr
    assert result.returncode == 2, result.stderr  # the fake files do not match the real checksums
    assert "Traceback" not in result.stderr
    assert "SHA-256 mismatch" in result.stderr


# --- the cache folder -------------------------------------------------------------------------------------


def test_cache_dir_respects_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("mnist") == tmp_path / "xdg" / "nnctl" / "mnist"
    assert cache_dir("fashion-mnist") == tmp_path / "xdg" / "nnctl" / "fashion-mnist"


@pytest.mark.parametrize("xdg", [None, ""])
def test_cache_dir_defaults_to_home_cache(tmp_path, monkeypatch, xdg):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if xdg is None:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", xdg)
    assert cache_dir("mnist") == tmp_path / "home" / ".cache" / "nnctl" / "mnist"


def test_fetch_without_a_folder_uses_the_cache_dir(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    results = fetch("mnist", mirror=mirror.url, files=mirror.manifest(), backoff=NO_SLEEP, timeout=5.0)
    expected = tmp_path / "xdg" / "nnctl" / "mnist"
    assert {path.parent for path, _ in results} == {expected}
    for name, body in mirror.data.items():
        assert (expected / name).read_bytes() == body
