"""Shared helpers: run the real CLI in a subprocess, and read run folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"


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
