"""Shared helpers: run the real CLI in a subprocess, and read run folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"


def pytest_configure(config):
    """The suite starts several hundred ``python -m nnctl`` processes.  Where PYTHONDONTWRITEBYTECODE is set (as
    on some CI machines) each of them would compile nnctl's modules from source again, about 0.1 s of a 0.7 s
    start; compile them once here instead (into nnctl's ``__pycache__``, which git ignores; Python still reads
    bytecode it is told not to write).  Once, in the main process: xdist's workers find it done."""
    if os.environ.get("PYTHONDONTWRITEBYTECODE") and not hasattr(config, "workerinput"):
        import compileall

        compileall.compile_dir(REPO / "nnctl", quiet=1)


def nnctl(*args, cwd=None, timeout=300, env=None) -> subprocess.CompletedProcess:
    """``python -m nnctl ARGS`` in a subprocess, as a user would run it (stdout is a pipe, not a terminal)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "nnctl", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def nnctl_in_process(*args, cwd=None) -> SimpleNamespace:
    """``nnctl ARGS`` through the CLI's own ``main`` in this process: the same code as ``python -m nnctl``
    without a new interpreter's 0.7 s start-up, for the many bad-input cases that end before training.
    Returns returncode, stdout and stderr; an exception escaping ``main`` is reported as a traceback."""
    import contextlib
    import io
    import traceback

    from nnctl import cli

    stdout, stderr = io.StringIO(), io.StringIO()
    argv, previous = sys.argv, os.getcwd()
    sys.argv = ["nnctl", *map(str, args)]
    code = 0
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                cli.main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            except BaseException:  # noqa: BLE001 - what a user would have seen as a traceback
                stderr.write(traceback.format_exc())
                code = 1
    finally:
        sys.argv = argv
        os.chdir(previous)
    return SimpleNamespace(returncode=code, stdout=stdout.getvalue(), stderr=stderr.getvalue())


def train_json(*args, out: Path, cwd=None) -> dict:
    """Run ``nnctl train ... --json`` and return its one JSON object (asserting a clean exit)."""
    result = nnctl("train", *args, "--out", out, "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


@pytest.fixture
def runs(tmp_path) -> Path:
    return tmp_path / "runs"
