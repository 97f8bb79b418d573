"""What performance work must not break, checked without timing anything: no memory growth per training
step, and a command line that starts without importing the heavy optional packages."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc

import numpy as np

from conftest import CONFIGS


def test_training_steps_do_not_grow_memory(tmp_path):
    from nnctl.config import load_config
    from nnctl.data import load_data
    from nnctl.runs import RunFolder, create_run_dir
    from nnctl.training import Reporter, Trainer

    loaded = load_config(
        CONFIGS / "spiral.yaml",
        ["model.layers=[{type: dense, units: 16, activation: tanh}, {type: batchnorm}, {type: dropout, rate: 0.2}, {type: dense, units: 2}]",
         "optimizer={name: adam, lr: 0.01}", "data.augment.noise_std=0.1", "model.regularization.l2=0.001", "training.grad_clip=1.0"],
    )  # fmt: skip
    data = load_data(loaded)
    trainer = Trainer(loaded, data, RunFolder(create_run_dir(tmp_path, "mem")), Reporter())
    x, targets = trainer.train.x[:32], trainer.head.targets(trainer.train.y[:32])
    for _ in range(50):  # warm up: caches, first-time allocations
        trainer.step(x, targets)
    tracemalloc.start()
    trainer.step(x, targets)
    before = tracemalloc.take_snapshot()
    for _ in range(2000):
        trainer.step(x, targets)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert growth < 20_000, f"{growth} bytes more after 2000 steps"
    assert np.isfinite(trainer.optimizer.params[0]).all()


def test_help_imports_no_heavy_optional_package():
    code = (
        "import sys, runpy\n"
        "sys.argv = ['nnctl', '--help']\n"
        "try:\n"
        "    runpy.run_module('nnctl', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "import json\n"
        "heavy = ['matplotlib', 'dask', 'distributed', 'optuna', 'torch', 'sklearn', 'onnx', 'onnxruntime', 'safetensors']\n"
        "print(json.dumps([name for name in heavy if name in sys.modules]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
