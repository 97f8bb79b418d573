"""scripts/reproduce_lecture.py: the quick report runs real trainings and writes a markdown page whose
figures exist and whose numbers are those of the run folders."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "reproduce_lecture.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SECTIONS = ["perceptron", "XOR", "universal approximation", "activation", "momentum", "dropout", "batch norm", "normalization", "augmentation"]


def summaries(runs: Path, prefix: str) -> list[dict]:
    """summary.json of every run folder ``RUNS/<prefix>-<timestamp>``."""
    return [json.loads((folder / "summary.json").read_text()) for folder in sorted(runs.glob(f"{prefix}-2*")) if (folder / "summary.json").exists()]


def test_quick_report_is_written_from_real_runs(tmp_path):
    out, runs = tmp_path / "report", tmp_path / "report" / "runs"
    started = time.monotonic()
    # --mnist pointing at an empty folder: the test does not depend on MNIST being on the machine, and checks the skip
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out), "--runs", str(runs), "--mnist", str(tmp_path / "no-mnist")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    report = out / "experiments.md"
    assert report.is_file()
    text = report.read_text(encoding="utf-8")

    # the header: when, how, on what
    assert re.search(r"Generated \d{4}-\d\d-\d\d \d\d:\d\d UTC by `python scripts/reproduce_lecture.py --quick", text)
    assert "real nnctl runs" in text and re.search(r"on a \d+-core machine", text)
    assert "Quick mode" in text
    # every slide's section, with a verdict
    for name in SECTIONS:
        assert re.search(rf"^## .*{re.escape(name)}", text, re.IGNORECASE | re.MULTILINE), f"no section heading for {name}"
    assert text.count("**Verdict: ") >= len(SECTIONS)
    # MNIST absent: said so, not failed
    assert "MNIST was not found" in text and "skipped" in text

    # every figure it references exists under img/ and is a PNG
    images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text)
    assert len(images) >= 10
    for image in images:
        assert image.startswith("img/"), image
        path = out / image
        assert path.is_file(), f"{image} is referenced but missing"
        assert path.read_bytes()[:8] == PNG_MAGIC, f"{image} is not a PNG"
    assert {p.name for p in (out / "img").glob("*.png")} == {Path(i).name for i in images}

    # numbers come from the runs: the perceptron on XOR ...
    (xor,) = summaries(runs, "perceptron-xor")
    assert xor["status"] == "not_converged" and xor["best_train_accuracy"] == 0.75
    row = f"| XOR | 0 | not_converged | {xor['epochs_run']} | {xor['updates']} | not separable | 0.75 | {xor['test_accuracy']:.2f} |"
    assert row in text
    (and_run,) = summaries(runs, "perceptron-and")
    assert f"| AND | — | converged | {and_run['epochs_run']} | {and_run['updates']} |" in text
    # ... and the normalization runs' test R², as the run folders hold them
    r2 = sorted(s["test_r2"] for s in summaries(runs, "normalization"))
    assert len(r2) == 2
    assert f"| standard | {r2[1]:.4f} |" in text and f"| none | {r2[0]:.4f} |" in text
    assert elapsed < 240, f"the quick report took {elapsed:.0f} s"


def test_novikoff_bound_of_the_truth_tables(monkeypatch):
    """The bound printed beside the perceptron's updates: R² = 3; γ = 1/√17 for AND, 1/3 for OR (worked out by hand)."""
    spec = importlib.util.spec_from_file_location("reproduce_lecture", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    assert module.novikoff_bound("and") == pytest.approx(51, rel=1e-3)
    assert module.novikoff_bound("or") == pytest.approx(27, rel=1e-3)
    assert module.novikoff_bound("xor") is None
