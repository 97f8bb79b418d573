"""nnctl export: an ONNX graph and PyTorch weights (safetensors) that compute what ``nnctl predict`` computes.

Each case trains a real run through the CLI for a few epochs (one subprocess), then predicts a CSV with
``nnctl predict``, exports both formats and runs them in onnxruntime and torch.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import CONFIGS, nnctl, nnctl_in_process

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
safe_open = pytest.importorskip("safetensors").safe_open

EVERY_FEATURE = "data.features=[x1, x2, x1_sq, x2_sq, x1_x2, sin_x1, sin_x2]"
EVERY_LAYER = (
    "model.layers=["
    "{type: dense, units: 8, activation: {name: leaky_relu, slope: 0.2}}, {type: dense, units: 8, activation: {name: elu, alpha: 0.5}}, "
    "{type: maxout, units: 6, pieces: 3}, {type: batchnorm}, {type: activation, name: softplus}, "
    "{type: dense, units: 8, activation: sigmoid}, {type: dropout, rate: 0.2}, {type: dense, units: 8, activation: relu}, "
    "{type: activation, name: identity}, {type: dense, units: 2}]"
)

#: name -> (config, overrides, whether torch.nn can express the model): one case per kind of model the shipped
#: configs train (the configs of the same kind in the comment), and every layer, activation and normalization
CASES = {
    "spiral": ("spiral.yaml", ["training.epochs=3"], True),  # tanh, cross-entropy, x1, x2: activations, momentum
    "dropout": ("dropout.yaml", ["training.epochs=3"], True),  # relu and dropout: augmentation
    "batchnorm": ("batchnorm.yaml", ["training.epochs=2"], True),  # batch norm, sigmoid activation layers: batchnorm_vanilla
    "digits": ("digits_mlp.yaml", ["training.epochs=2"], True),  # images, standard normalization, 10 classes: mnist_mlp
    "normalization": ("normalization.yaml", ["training.epochs=3"], True),  # regression on x, standard: universal_approximation
    "reg_gauss": ("reg_gauss.yaml", ["training.epochs=3"], True),  # the Playground's regression: reg_plane
    "xor_mlp": ("xor_mlp.yaml", ["training.epochs=5"], True),  # mse on -1/+1 targets, one tanh output
    "perceptron": ("perceptron_xor.yaml", [], False),  # a trained threshold unit: perceptron_and, perceptron_or
    "threshold_network": ("mcculloch_pitts_xor_network.yaml", [], False),  # fixed threshold units: mcculloch_pitts_*
    "every_layer": ("spiral.yaml", ["training.epochs=3", EVERY_FEATURE, "data.normalize=minmax", EVERY_LAYER], True),
    "pca_mse": (
        "spiral.yaml",
        ["training.epochs=3", "data.features=[x1, x2, x1_x2]", "data.normalize=pca_whiten", "loss=mse"],
        True,
    ),  # one-hot mse: the class of the largest score
    "heaviside": ("activations.yaml", ["training.epochs=2", "model.layers.0.activation=heaviside"], False),
}


def train(config: str, overrides: list[str], out: Path) -> Path:
    result = nnctl("train", CONFIGS / config, *(arg for value in overrides for arg in ("--set", value)), "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip())


def input_rows(run: Path) -> tuple[list[str], np.ndarray]:
    """Rows to predict: points over the Playground's square, else the run's own test rows."""
    from nnctl.data import load_data
    from nnctl.evaluation import restore

    restored = restore(run)
    columns = restored.meta["input_columns"]
    if columns == ["x1", "x2"]:
        return columns, np.random.default_rng(0).uniform(-6, 6, (300, 2)).astype(np.float32)
    return columns, load_data(restored.loaded).test.x.astype(np.float32)


def write_csv(path: Path, columns: list[str], x: np.ndarray) -> Path:
    lines = [",".join(columns)] + [",".join(repr(float(v)) for v in row) for row in x]
    path.write_text("\n".join(lines) + "\n")
    return path


def nnctl_outputs(run: Path, inputs: Path) -> np.ndarray:
    """The network's output for the rows of ``inputs``, as ``predict`` computes it."""
    from nnctl.evaluation import restore
    from nnctl.metrics import forward_in_chunks
    from nnctl.predict import read_inputs

    restored = restore(run)
    x, _ = read_inputs(restored, inputs, None)
    return forward_in_chunks(restored.model, restored.preprocessor.apply(x))


def predict_csv(run: Path, inputs: Path, proba: bool) -> list[dict]:
    result = nnctl_in_process("predict", run, inputs, *(["--proba"] if proba else []))
    assert result.returncode == 0, result.stderr
    return list(csv.DictReader(io.StringIO(result.stdout)))


def prepare(x: np.ndarray, meta: dict[str, str]) -> np.ndarray:
    """The README's recipe: the model's input from the raw columns, by the safetensors file's metadata."""
    if "features" in meta:
        x1, x2 = x[:, 0].astype(np.float64), x[:, 1].astype(np.float64)
        formulas = {"x1": x1, "x2": x2, "x1_sq": x1 * x1, "x2_sq": x2 * x2, "x1_x2": x1 * x2, "sin_x1": np.sin(x1), "sin_x2": np.sin(x2)}
        x = np.stack([formulas[name] for name in json.loads(meta["features"])], axis=1).astype(np.float32)
    constants = {name: np.array(value, dtype=np.float32) for name, value in json.loads(meta["preprocessing"]).items()}
    if meta["normalize"] != "none":
        x = x - constants["shift"]
        if "rotation" in constants:
            x = x @ constants["rotation"]
        x = x * constants["scale"]
    return x


@pytest.mark.parametrize("case", CASES)
def test_onnx_and_torch_compute_what_predict_computes(case, tmp_path):
    config, overrides, torch_expressible = CASES[case]
    run = train(config, overrides, tmp_path / "runs")
    columns, x = input_rows(run)
    inputs = write_csv(tmp_path / "inputs.csv", columns, x)
    checkpoint = run / json.loads((run / "summary.json").read_text())["checkpoint"]  # the one predict uses
    meta = json.loads(np.load(checkpoint)["meta.json"][()])
    softmax = meta["task"] == "classification" and meta["config"]["loss"] == "cross_entropy" and meta["config"]["model"]["type"] == "mlp"
    predicted = predict_csv(run, inputs, proba=softmax)
    labels = [row["prediction"] for row in predicted]
    output = nnctl_outputs(run, inputs)

    exported = nnctl_in_process("export", run, "--format", "onnx")
    assert exported.returncode == 0, exported.stderr
    onnx_file = checkpoint.with_suffix(".onnx")
    assert exported.stderr == f"wrote {onnx_file}\n" and exported.stdout == ""
    model = onnx.load(onnx_file)
    onnx.checker.check_model(model, full_check=True)
    assert (model.ir_version, [(o.domain, o.version) for o in model.opset_import]) == (8, [("", 17)])
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["input_columns"]) == columns and props["nnctl_version"] == "0.1.0"
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    results = dict(zip(json.loads(props["outputs"]), session.run(None, {"input": x})))
    assert [o.name for o in session.get_outputs()] == list(results)
    if meta["task"] == "regression":
        assert list(results) == ["prediction"]
        np.testing.assert_allclose(results["prediction"], [float(v) for v in labels], rtol=1e-5, atol=1e-5)
    else:
        assert json.loads(props["class_names"]) == meta["class_names"]
        assert results["label"].tolist() == labels
        if softmax:
            probabilities = [[float(row[f"p_{name}"]) for name in meta["class_names"]] for row in predicted]
            np.testing.assert_allclose(results["probabilities"], probabilities, atol=1e-5)
        else:
            np.testing.assert_allclose(results["scores"], output, rtol=1e-5, atol=1e-5)

    exported = nnctl_in_process("export", run, "--format", "safetensors")
    weights = checkpoint.with_suffix(".safetensors")
    if not torch_expressible:
        assert exported.returncode == 2 and exported.stdout == "" and not weights.exists()
        assert exported.stderr.count("\n") == 1 and "has no torch.nn module" in exported.stderr and "--format onnx" in exported.stderr
        return
    assert exported.returncode == 0, exported.stderr
    assert exported.stderr == f"wrote {weights}\n"
    namespace: dict = {}
    exec(exported.stdout, namespace)  # the printed source: the Sequential, load_state_dict(strict=True), eval()
    network = namespace["model"]
    assert isinstance(network, torch.nn.Sequential) and not network.training
    with safe_open(str(weights), framework="np") as handle:
        file_meta = handle.metadata()
    with torch.no_grad():
        torch_output = network(torch.from_numpy(prepare(x, file_meta))).numpy()
    np.testing.assert_allclose(torch_output, output, rtol=1e-5, atol=1e-5)
    if meta["task"] == "classification":
        names = np.array(meta["class_names"])
        torch_labels = names[torch_output.argmax(axis=1)] if torch_output.shape[1] > 1 else names[(torch_output[:, 0] >= 0).astype(int)]
        assert torch_labels.tolist() == labels


def test_the_cases_cover_every_activation_layer_and_normalization():
    from nnctl.config import load_config
    from nnctl.engine.activations import ACTIVATIONS

    activations, layers, normalizations = set(), set(), set()
    for config, overrides, _ in CASES.values():
        loaded = load_config(CONFIGS / config, overrides)
        normalizations.add(loaded.config.data.normalize)
        model = loaded.config.model
        for layer in model.layers if model.type in ("mlp", "threshold_network") else [model]:
            kind = layer.type if model.type == "mlp" else "threshold"
            layers.add(kind)
            if kind in ("dense", "activation"):
                activations.add(layer.name if kind == "activation" else layer.activation.name)
    assert set(ACTIVATIONS) <= activations
    assert layers == {"dense", "maxout", "dropout", "batchnorm", "activation", "threshold"}
    assert normalizations == {"none", "standard", "minmax", "pca_whiten"}


# ------------------------------------------------------------------------------------ choices and errors


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run with a best checkpoint (by validation loss) beside its last one, and standard normalization."""
    overrides = ["training.epochs=4", "data.val_fraction=0.2", "training.select_best={monitor: val_loss}", "data.normalize=standard"]
    return train("spiral.yaml", overrides, tmp_path_factory.mktemp("export") / "runs")


def clean_error(result, *fragments: str) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    return result.stderr


def test_checkpoint_choice_and_the_printed_source_on_the_real_command_line(run, tmp_path):
    summary = json.loads((run / "summary.json").read_text())
    assert summary["checkpoint"] == "checkpoints/best.npz"
    x = np.random.default_rng(1).uniform(-6, 6, (50, 2)).astype(np.float32)
    for which, expected in ((None, "best"), ("last", "last"), ("best", "best")):
        out = tmp_path / f"{which}.onnx"
        result = nnctl_in_process("export", run, "-f", "onnx", "--out", out, *(["--checkpoint", which] if which else []))
        assert result.returncode == 0, result.stderr
        probabilities = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(["probabilities"], {"input": x})[0]
        reference = nnctl_outputs(run / "checkpoints" / f"{expected}.npz", write_csv(tmp_path / "x.csv", ["x1", "x2"], x))
        reference = np.exp(reference - reference.max(axis=1, keepdims=True))
        np.testing.assert_allclose(probabilities, reference / reference.sum(axis=1, keepdims=True), atol=1e-5)

    result = nnctl("export", run, "--format", "safetensors", "--out", "model.safetensors", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "wrote model.safetensors\n"
    assert result.stdout.startswith("import torch\nfrom safetensors.torch import load_file\n\nmodel = torch.nn.Sequential(\n")
    assert "model.load_state_dict(load_file('model.safetensors'), strict=True)\n" in result.stdout
    from safetensors.numpy import load_file

    state = load_file(tmp_path / "model.safetensors")
    assert {name: value.shape for name, value in state.items()} == {
        "0.weight": (16, 2), "0.bias": (16,), "2.weight": (16, 16), "2.bias": (16,), "4.weight": (2, 16), "4.bias": (2,)
    }  # fmt: skip


def test_batch_norm_in_pytorch_names(tmp_path):
    from safetensors.numpy import load_file

    run = train("batchnorm.yaml", ["training.epochs=1", "model.layers=[{type: dense, units: 4}, {type: batchnorm}, {type: activation, name: relu}, {type: dense, units: 2}]"], tmp_path / "runs")
    result = nnctl_in_process("export", run, "--format", "safetensors", "--out", tmp_path / "bn.safetensors")
    assert result.returncode == 0, result.stderr
    assert "torch.nn.BatchNorm1d(4, eps=1e-05, momentum=0.1),  # 1" in result.stdout
    state = load_file(tmp_path / "bn.safetensors")
    assert sorted(state) == ["0.bias", "0.weight", "1.bias", "1.num_batches_tracked", "1.running_mean", "1.running_var", "1.weight", "3.bias", "3.weight"]
    assert state["1.num_batches_tracked"].dtype == np.int64 and state["1.num_batches_tracked"].shape == ()
    checkpoint = np.load(run / "checkpoints" / "last.npz")
    np.testing.assert_array_equal(state["1.running_var"], checkpoint["model/layers.1.running_var"])
    np.testing.assert_array_equal(state["0.weight"], checkpoint["model/layers.0.weight"].T)


def test_bad_arguments(run, tmp_path):
    clean_error(nnctl_in_process("export", run, "--format", "tflite"), "--format: 'tflite' is not allowed; allowed: onnx, safetensors")
    clean_error(nnctl_in_process("export", run, "-f", "onnx", "--checkpoint", "first"), "--checkpoint: 'first' is not allowed; allowed: last, best")
    clean_error(nnctl_in_process("export", tmp_path / "nothing", "-f", "onnx"), "no such run folder or checkpoint")
    clean_error(
        nnctl_in_process("export", run / "checkpoints" / "last.npz", "-f", "onnx", "--checkpoint", "best"),
        "is a checkpoint file already; choosing one (best) needs a run folder",
    )
    clean_error(nnctl_in_process("export", run, "-f", "onnx", "--out", tmp_path / "missing" / "model.onnx"), f"the folder {tmp_path / 'missing'} does not exist")
    clean_error(nnctl_in_process("export", run, "-f", "onnx", "--out", tmp_path), "is a folder")
    clean_error(nnctl_in_process("export", run, "-f", "onnx", "--out", run / "checkpoints" / "best.npz", "--force"), "is the checkpoint being exported")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_is_replaced_only_with_force(run, tmp_path):
    out = tmp_path / "model.onnx"
    out.write_text("keep me")
    clean_error(nnctl_in_process("export", run, "-f", "onnx", "--out", out), f"{out}: already exists; give --force to replace it")
    assert out.read_text() == "keep me"
    result = nnctl_in_process("export", run, "-f", "onnx", "--out", out, "--force")
    assert result.returncode == 0, result.stderr
    onnx.checker.check_model(onnx.load(out))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.onnx"]  # no temporary file left


def test_runs_without_the_checkpoint(run, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(run, bare)
    (bare / "checkpoints" / "best.npz").unlink()
    clean_error(nnctl_in_process("export", bare, "-f", "onnx", "--checkpoint", "best"), "the run has no checkpoints/best.npz", "select_best")
    (bare / "checkpoints" / "last.npz").unlink()
    clean_error(nnctl_in_process("export", bare, "-f", "onnx"), "the run has no checkpoint yet")
    assert sorted(path.name for path in (bare / "checkpoints").iterdir()) == []


def forged(run: Path, folder: Path, change) -> Path:
    """A copy of the run's last checkpoint with its arrays or metadata changed by ``change(arrays, meta)``."""
    from nnctl.runs import load_checkpoint, save_checkpoint

    arrays, meta = load_checkpoint(run / "checkpoints" / "last.npz")
    change(arrays, meta)
    path = folder / "forged.npz"
    save_checkpoint(path, arrays, meta)
    return path


def test_corrupt_and_forged_checkpoints(run, tmp_path):
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes((run / "checkpoints" / "last.npz").read_bytes()[:300])
    clean_error(nnctl_in_process("export", truncated, "-f", "onnx"), str(truncated))
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **{"model/layers.0.weight": np.array([{"a": 1}], dtype=object)})
    clean_error(nnctl_in_process("export", pickled, "-f", "safetensors"), str(pickled))
    changes = {
        "three class names": (lambda arrays, meta: meta.update(class_names=["a", "b", "c"]), "names 3 classes for a model of 2 class outputs"),
        "an unknown feature": (lambda arrays, meta: meta.update(playground_features=["x1", "x3"]), "unknown Playground feature 'x3'"),
        "no input columns": (lambda arrays, meta: meta.pop("input_columns"), "does not list the columns its model reads"),
        "three input columns": (lambda arrays, meta: meta.update(input_columns=["a", "b", "c"]), "a Playground model reads the columns x1, x2, not a, b, c"),
        "a weight of another shape": (lambda arrays, meta: arrays.update({"model/layers.0.weight": np.ones((3, 16), np.float32)}), "layers.0.weight has shape (3, 16)"),
        "no normalization shift": (lambda arrays, meta: arrays.pop("preprocess/shift"), "normalize: standard: preprocess/shift missing"),
        "a shift of three values": (lambda arrays, meta: arrays.update({"preprocess/shift": np.zeros(3, np.float32)}), "preprocess/shift has shape (3,), the model needs (2,)"),
    }
    for change, message in changes.values():
        path = forged(run, tmp_path, change)
        for fmt in ("onnx", "safetensors"):
            clean_error(nnctl_in_process("export", path, "-f", fmt), str(path), message)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["forged.npz", "pickled.npz", "truncated.npz"]


BLOCKED_IMPORT = """
import sys

blocked = sys.argv[1]

class Block:
    def find_spec(self, name, path=None, target=None):
        if name == blocked or name.startswith(blocked + "."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Block())
sys.argv = ["nnctl", "export", sys.argv[2], "--format", sys.argv[3]]
from nnctl.cli import main
main()
"""


@pytest.mark.parametrize("fmt", ["onnx", "safetensors"])
def test_a_missing_extra_names_the_pip_command(run, fmt):
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(BLOCKED_IMPORT), fmt, str(run), fmt], capture_output=True, text=True, timeout=120
    )
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr == f'error: --format {fmt} needs the {fmt} package: pip install "nnctl[{fmt}]"\n'
    assert not list((run / "checkpoints").glob(f"*.{fmt}"))
