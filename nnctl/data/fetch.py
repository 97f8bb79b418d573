"""``nnctl data fetch``: download MNIST or Fashion-MNIST into a cache folder, verified by SHA-256.

Each file is downloaded to ``<name>.part`` beside its final name, resumed with an HTTP Range request
after a dropped connection, retried a few times, checked against its SHA-256 and only then moved to its
final name: a file under its final name is always complete and verified.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from nnctl.errors import NnctlError

SOURCES = {
    "mnist": {
        "mirror": "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "files": {
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    },
    "fashion-mnist": {
        "mirror": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "files": {
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
    },
}
MIRROR_ENV = "NNCTL_DATA_MIRROR"
CHUNK = 1 << 16


def cache_dir(dataset: str) -> Path:
    """``$XDG_CACHE_HOME/nnctl/<dataset>``, by default ``~/.cache/nnctl/<dataset>``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nnctl" / dataset


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ProgressHook:
    """Told of each file's size and of every chunk received (the CLI draws a rich progress bar)."""

    def start(self, name: str, total: int | None, done: int) -> None: ...

    def advance(self, n: int) -> None: ...

    def finish(self, name: str, status: str) -> None: ...


def fetch(
    dataset: str,
    folder: Path | None = None,
    mirror: str | None = None,
    files: dict[str, str] | None = None,
    retries: int = 3,
    timeout: float = 30.0,
    progress: ProgressHook | None = None,
    backoff: Callable[[int], float] = lambda attempt: min(2.0**attempt, 10.0),
) -> list[tuple[Path, str]]:
    """Download the dataset's files into ``folder``; returns (path, "verified" | "downloaded") per file.
    ``files`` (name -> SHA-256) defaults to the dataset's known files."""
    if dataset not in SOURCES:
        raise NnctlError(f"unknown dataset {dataset!r}; allowed: {', '.join(SOURCES)}")
    folder = Path(folder) if folder else cache_dir(dataset)
    mirror = mirror or os.environ.get(MIRROR_ENV) or SOURCES[dataset]["mirror"]
    files = files or SOURCES[dataset]["files"]
    progress = progress or ProgressHook()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NnctlError(f"{folder}: cannot create the folder: {exc.strerror}") from None
    results = []
    for name, expected in files.items():
        final = folder / name
        if final.is_file() and sha256(final) == expected:
            progress.finish(name, "verified")
            results.append((final, "verified"))
            continue
        url = mirror.rstrip("/") + "/" + name
        _download(url, final, expected, retries, timeout, progress, backoff)
        progress.finish(name, "downloaded")
        results.append((final, "downloaded"))
    return results


def _download(url, final: Path, expected: str, retries, timeout, progress, backoff) -> None:
    part = final.with_name(final.name + ".part")
    if part.is_file() and sha256(part) == expected:  # an earlier run got every byte but stopped before the move
        os.replace(part, final)
        return
    last_error = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff(attempt))
        try:
            _download_once(url, part, timeout, progress)
            break
        except urllib.error.HTTPError as exc:
            if exc.code == 416:  # the .part is already complete (or longer than the file): start over
                part.unlink(missing_ok=True)
            elif 400 <= exc.code < 500:
                raise NnctlError(f"{url}: HTTP {exc.code} {exc.reason}; try another --mirror (or ${MIRROR_ENV})") from None
            last_error = f"HTTP {exc.code} {exc.reason}"
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            last_error = str(getattr(exc, "reason", exc)) or type(exc).__name__
    else:
        kept = f"; the partial file {part.name} is kept and the next fetch resumes it" if part.exists() else ""
        raise NnctlError(
            f"{url}: download failed after {retries + 1} attempts ({last_error}){kept}; to download from another server "
            f"pass --mirror URL (or set ${MIRROR_ENV}); offline, copy the IDX files ({final.name} and the others) into {final.parent}"
        )
    actual = sha256(part)
    if actual != expected:
        part.unlink(missing_ok=True)
        raise NnctlError(f"{final.name}: SHA-256 mismatch (expected {expected}, got {actual}); the download was deleted")
    os.replace(part, final)


def _download_once(url: str, part: Path, timeout: float, progress: ProgressHook) -> None:
    """Append to ``part`` from where it ends (HTTP Range); a server that ignores Range restarts the file."""
    done = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if done and response.status != 206:
            done = 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length is not None else None
        progress.start(part.name.removesuffix(".part"), total, done)
        received = 0
        with open(part, "ab" if done else "wb") as handle:
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                handle.write(chunk)
                received += len(chunk)
                progress.advance(len(chunk))
            handle.flush()
            os.fsync(handle.fileno())
        if length is not None and received < int(length):
            raise ConnectionError(f"connection closed after {done + received:,} of {total:,} bytes")
