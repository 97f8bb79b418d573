"""The web playground's server, in process (Starlette's test client): the token, the WebSocket protocol, a
TensorFlow Playground link, export and retrace, uploads good and bad, Save run, two pages at once."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import json
import time
from urllib.error import HTTPError
from urllib.request import urlopen

import numpy as np
import pytest
from starlette.testclient import TestClient

from conftest import REPO, nnctl, nnctl_in_process
from nnctl.playground.urlstate import parse_hash, seed_from_text, to_hash
from nnctl.playground.web.app import create_app
from nnctl.runs import load_checkpoint

TOKEN = "test-token-123"
#: a link copied from playground.tensorflow.org (its every key), on circle with noise 10 and a 4-2 network
TF_LINK = (
    "activation=tanh&batchSize=10&dataset=circle&regDataset=reg-plane&learningRate=0.03&regularizationRate=0"
    "&noise=10&networkShape=4,2&seed=0.80593&showTestData=false&discretize=false&percTrainData=50&x=true&y=true"
    "&xTimesY=false&xSquared=false&ySquared=false&cosX=false&sinX=false&cosY=false&sinY=false&collectStats=false"
    "&problem=classification&initZero=false&hideText=false"
)
CSV_3 = "a,b,label\n" + "".join(f"{x:.3f},{y:.3f},{'abc'[int((x + 3) // 2) % 3]}\n" for x, y in np.random.default_rng(0).uniform(-3, 3, (90, 2)))


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(token=TOKEN, runs_dir=tmp_path / "runs")) as client:
        yield client


def receive(ws, kind: str, limit: int = 200) -> dict:
    """The next message of ``kind`` (frames of a playing page may come first)."""
    for _ in range(limit):
        message = ws.receive_json()
        if message["type"] == kind:
            return message
        assert message["type"] != "error" or kind == "error", message
    raise AssertionError(f"no {kind} message")


def hello(ws, hash_text: str = TF_LINK) -> tuple[dict, dict]:
    ws.send_json({"type": "hello", "hash": hash_text})
    return receive(ws, "state"), receive(ws, "frame")


def grid(encoded: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(encoded), dtype=np.uint8) / 127.5 - 1.0


# ------------------------------------------------------------------------------------ the token


def test_every_route_needs_the_token(client):
    assert client.get("/").status_code == 403
    assert client.get("/?token=wrong").status_code == 403
    assert "needs the token" in client.get("/static/app.js").text
    page = client.get(f"/?token={TOKEN}")
    assert page.status_code == 200 and 'data-testid="heatmap"' in page.text
    assert f'src="static/app.js?token={TOKEN}"' in page.text and not page.cookies  # no cookie: other ports would see it
    assert client.get(f"/static/app.js?token={TOKEN}").status_code == 200
    assert client.get("/static/app.js", headers={"X-Nnctl-Token": TOKEN}).status_code == 200
    for name in ("..%2Fapp.py", "..%2F..%2Fpyproject.toml", "page.py", "%2E%2E"):
        assert client.get(f"/static/{name}?token={TOKEN}").status_code == 404, name
    assert client.get(f"/model.npz?token={TOKEN}&session=none").status_code == 404


def test_a_websocket_without_the_token_is_closed(client):
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect) as closed:
        with client.websocket_connect("/ws?token=wrong") as ws:
            ws.receive_json()
    assert closed.value.code == 1008
    with pytest.raises(WebSocketDisconnect) as closed:  # the right token, but opened by another site's page
        with client.websocket_connect(f"/ws?token={TOKEN}", headers={"Origin": "http://127.0.0.1:9999"}) as ws:
            ws.receive_json()
    assert closed.value.code == 1008
    with client.websocket_connect(f"/ws?token={TOKEN}", headers={"Origin": "http://testserver"}) as ws:
        assert hello(ws)[0]["type"] == "state"


# ------------------------------------------------------------------------------------ a Playground link


def test_a_tensorflow_playground_link_opens_the_same_experiment(client):
    with client.websocket_connect(f"/ws?token={TOKEN}") as ws:
        state, frame = hello(ws)
    options = state["options"]
    assert state["data_name"] == "circle" and state["task"] == "classification" and state["notes"] == []
    assert [layer["units"] for layer in state["network"]] == [2, 4, 2, 1]  # inputs x1, x2; the Playground's one tanh output
    assert state["network"][-1]["activation"] == "tanh"
    assert (options["learningRate"], options["noise"], options["percTrainData"], options["batchSize"]) == ("0.03", "10", "50", "10")
    assert len(state["points"]["train"]) == 250 and len(state["points"]["test"]) == 250
    assert state["extent"] == [-6, 6, -6, 6]
    # every key of the link comes back with its value (the extras at their defaults are not written)
    pairs = dict(part.split("=") for part in state["hash"].split("&"))
    link = dict(part.split("=") for part in TF_LINK.split("&"))
    assert {k: v for k, v in link.items() if k not in ("cosX", "cosY", "collectStats", "initZero", "hideText")} == {
        k: v for k, v in pairs.items() if k in link
    }
    assert frame["epoch"] == 0 and frame["heatmap"]["size"] == 100
    assert len(grid(frame["heatmap"]["data"])) == 100 * 100
    assert set(frame["neurons"]["grids"]) == {"1:0", "1:1", "1:2", "1:3", "2:0", "2:1", "3:0"}
    assert [np.array(layer["w"]).shape for layer in frame["weights"]] == [(2, 4), (4, 2), (2, 1)]
    assert np.all(np.abs(np.array(frame["weights"][0]["w"])) <= 0.5) and frame["weights"][0]["b"] == [0.1] * 4


def test_the_same_link_gives_the_same_run_and_other_seeds_differ():
    assert seed_from_text("0.80593") == seed_from_text("0.80593") != seed_from_text("0.80594")
    assert seed_from_text("42") == 42
    state = parse_hash(TF_LINK)
    assert parse_hash(to_hash(state)).options == state.options


def test_what_nnctl_lacks_or_cannot_read_is_said_not_guessed():
    state = parse_hash("dataset=moons&cosX=true&learningRate=fast&regDataset=reg-argmax&networkShape=4,x&wat=1")
    text = " | ".join(state.notes)
    for piece in ("dataset=moons", "cos(x1)", "learningRate=fast", "reg-argmax", "networkShape=4,x", "unknown keys left out: wat"):
        assert piece in text, text
    assert state.options.dataset == "circle" and state.options.lr == 0.03 and state.options.layers == [4, 2]


def test_nnctl_extras_round_trip_through_the_hash():
    extras = "optimizer=adam&loss=cross_entropy&init=he_uniform&networkShape=8,8,4&activations=relu,tanh,sigmoid&dropout=0,0.2,0&batchnorm=1,0,0&schedule=cosine&period=300"
    state = parse_hash(TF_LINK + "&" + extras)
    options = state.options
    assert (options.optimizer, options.loss, options.init, options.schedule, options.period) == ("adam", "cross_entropy", "he_uniform", "cosine", 300)
    assert options.activations == ["relu", "tanh", "sigmoid"] and options.dropout == [0, 0.2, 0]
    assert parse_hash(to_hash(state)).options == options
    assert all(f"{pair}" in to_hash(state) for pair in extras.split("&"))


# ------------------------------------------------------------------------------------ training live


def test_play_streams_frames_and_the_test_loss_falls_on_circle(client):
    with client.websocket_connect(f"/ws?token={TOKEN}") as ws:
        _, first = hello(ws, TF_LINK.replace("learningRate=0.03", "learningRate=0.1"))
        ws.send_json({"type": "play"})
        epochs = [0]
        while epochs[-1] < 60:  # frames keep coming while the page plays
            epochs.append(receive(ws, "frame")["epoch"])
        ws.send_json({"type": "pause"})
        frame = receive(ws, "frame")
        while frame["running"]:
            frame = receive(ws, "frame")
    assert len(epochs) >= 3 and epochs == sorted(epochs)
    assert frame["metrics"]["test_loss"] < 0.5 * first["metrics"]["test_loss"]
    assert frame["metrics"]["test_accuracy"] > 0.85
    tail_epochs = [row[0] for row in frame["history_tail"]]
    assert tail_epochs == sorted(tail_epochs)
    assert frame["confusion"] is not None and sum(map(sum, frame["confusion"])) == 250


def test_step_live_settings_and_rebuilding_settings(client):
    with client.websocket_connect(f"/ws?token={TOKEN}") as ws:
        hello(ws)
        ws.send_json({"type": "step"})
        assert receive(ws, "frame")["epoch"] == 1
        ws.send_json({"type": "set", "changes": {"learningRate": "0.3"}})  # live: the weights and the epoch stay
        state, frame = receive(ws, "state"), receive(ws, "frame")
        assert frame["epoch"] == 1 and "learningRate=0.3" in state["hash"]
        session = client.app.state.playground.pages[state["session"]].session
        assert session.optimizer.lr == 0.15  # SGD on 1/2 (o - t)^2 at 0.3 is nnctl's mse at 0.15
        ws.send_json({"type": "set", "changes": {"learningRate": "0.1&dataset=xor"}})  # no key smuggled in a value
        assert "learningRate=0.1&dataset=xor" in receive(ws, "error")["message"]
        ws.send_json({"type": "set", "changes": {"networkShape": "4,2,3"}})  # a new network: epoch 0
        state, frame = receive(ws, "state"), receive(ws, "frame")
        assert frame["epoch"] == 0 and [layer["units"] for layer in state["network"]] == [2, 4, 2, 3, 1]
        ws.send_json({"type": "set", "changes": {"learningRate": "-1"}})
        assert "learningRate=-1" in receive(ws, "error")["message"]
        ws.send_json({"type": "set", "changes": {"xSquared": "true", "problem": "regression"}})
        state = receive(ws, "state")
        assert state["features"] == ["x1", "x2", "x1_sq"] and state["data_name"] == "reg-plane" and state["classes"] == []


def test_hovering_a_neuron_shows_it_and_editing_a_weight_changes_the_output(client):
    with client.websocket_connect(f"/ws?token={TOKEN}") as ws:
        _, frame = hello(ws)
        ws.send_json({"type": "focus", "node": "1:2"})
        focused = receive(ws, "frame")
        assert focused["heatmap"]["focus"] == "1:2"
        assert np.array_equal(grid(focused["heatmap"]["data"]).reshape(100, 100)[::4, ::4].shape, (25, 25))
        ws.send_json({"type": "focus", "node": None})
        assert receive(ws, "frame")["heatmap"]["data"] == frame["heatmap"]["data"]
        ws.send_json({"type": "edit", "kind": "weight", "layer": 2, "from": 0, "to": 0, "value": 3.5})
        edited = receive(ws, "frame")
        assert edited["weights"][2]["w"][0][0] == 3.5 and edited["heatmap"]["data"] != frame["heatmap"]["data"]
        ws.send_json({"type": "edit", "kind": "bias", "layer": 0, "unit": 9, "value": 1})
        assert "not a unit 9" in receive(ws, "error")["message"]
        ws.send_json({"type": "export"})  # even at epoch 0: the YAML's initialisation draws the unedited weight
        assert "# note: changed during training (nnctl train on this config uses the final settings from the start): a weight edited (layer 2, 0 -> 0) at epoch 0" in receive(ws, "yaml")["text"]
        ws.send_json({"type": "step"})
        receive(ws, "frame")
        ws.send_json({"type": "edit", "kind": "bias", "layer": 0, "unit": 1, "value": -2})
        receive(ws, "frame")
        ws.send_json({"type": "export"})
        assert "a bias edited (layer 0, unit 1) at epoch 1" in receive(ws, "yaml")["text"]
        ws.send_json({"type": "reset"})
        receive(ws, "state")
        ws.send_json({"type": "export"})
        assert "# note:" not in receive(ws, "yaml")["text"]  # a reset starts from the config's weights again


# ------------------------------------------------------------------------------------ export, save, weights


def train_steps(ws, epochs: int) -> dict:
    for _ in range(epochs):
        ws.send_json({"type": "step"})
        frame = receive(ws, "frame")
    return frame


def test_the_exported_yaml_retraces_the_session_with_nnctl_train(client, tmp_path):
    with client.websocket_connect(f"/ws?token={TOKEN}") as ws:
        state, _ = hello(ws, TF_LINK + "&optimizer=sgd&momentum=0.5&regularization=L2&regularizationRate=0.003&networkShape=5,3&dropout=0.1,0&batchnorm=0,1")
        frame = train_steps(ws, 12)
        ws.send_json({"type": "export"})
        exported = receive(ws, "yaml")
        weights = client.get(f"/model.npz?token={TOKEN}&session={state['session']}")
    assert exported["filename"] == "playground-circle.yaml"
    config = tmp_path / exported["filename"]
    config.write_text(exported["text"])
    result = nnctl_in_process("train", str(config), "--out", str(tmp_path / "out"), "--quiet")
    assert result.returncode == 0, result.stderr
    run = next((tmp_path / "out").iterdir())
    trained, _ = load_checkpoint(run / "checkpoints" / "last.npz")
    (tmp_path / "page.npz").write_bytes(weights.content)
    shown, meta = load_checkpoint(tmp_path / "page.npz")
    assert meta["epoch"] == 12
    model_keys = sorted(k for k in trained if k.startswith("model/"))
    assert model_keys == sorted(k for k in shown if k.startswith("model/"))
    for key in model_keys:
        assert np.array_equal(trained[key], shown[key]), key  # bit for bit
    summary = (run / "summary.json").read_text()
    assert f"{frame['metrics']['test_loss']}" in summary
    # the downloaded weights are a checkpoint nnctl predict reads, giving what the trained run gives
    (tmp_path / "points.csv").write_text("x1,x2\n1.5,-2\n-3,0.25\n")
    from_page = nnctl_in_process("predict", str(tmp_path / "page.npz"), str(tmp_path / "points.csv"))
    from_run = nnctl_in_process("predict", str(run), str(tmp_path / "points.csv"))
    assert from_page.returncode == 0, from_page.stderr
    assert from_page.stdout == from_run.stdout and from_page.stdout.count("\n") >= 3


def test_save_run_writes_a_run_that_eval_and_resume_read(client, tmp_path):
    with client.websocket_connect(f"/ws?token={TOKEN}") as ws:
        hello(ws)
        ws.send_json({"type": "save_run"})
        assert "at least one epoch" in receive(ws, "error")["message"]
        frame = train_steps(ws, 5)
        ws.send_json({"type": "save_run"})
        saved = receive(ws, "saved")
    run = tmp_path / "runs" / os.path.basename(saved["path"])
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.npz").is_file()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 5
    evaluated = nnctl_in_process("eval", str(run), "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"{frame['metrics']['test_loss']}" in evaluated.stdout
    resumed = nnctl_in_process("resume", str(run), "--set", "training.epochs=8", "--force", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 8


# ------------------------------------------------------------------------------------ uploads and import


def test_a_csv_upload_with_three_classes_trains_and_scores(client):
    with client.websocket_connect(f"/ws?token={TOKEN}") as ws:
        hello(ws)
        ws.send_json({"type": "upload", "name": "three.csv", "text": CSV_3})
        state, frame = receive(ws, "state"), receive(ws, "frame")
        assert state["data_name"] == "three.csv" and state["classes"] == ["a", "b", "c"] and state["features"] == ["a", "b"]
        assert state["feature_choices"] == [] and state["network"][-1]["units"] == 3
        assert state["options"]["loss"] == "cross_entropy"  # the Playground's squared error has one output, for two classes
        assert frame["heatmap_classes"] is not None and len(frame["confusion"]) == 3
        outputs = [grid(frame["neurons"]["grids"][f"3:{k}"]) for k in range(3)]  # each class's probability, 2 p - 1
        assert np.allclose(sum((g + 1) / 2 for g in outputs), 1.0, atol=0.02)
        frame = train_steps(ws, 30)
        assert frame["metrics"]["train_accuracy"] > 0.6
        ws.send_json({"type": "export"})
        text = receive(ws, "yaml")["text"]
        assert "path: three.csv" in text and "put it beside this file" in text


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("bad.csv", "a,b,label\n1,2,x\n3,oops,y\n", "bad.csv: line 3, column 'b'"),
        ("one.csv", "a,b,label\n1,2,x\n3,4,x\n", "has one class"),
        ("empty.csv", "", "the file is empty"),
        ("huge.csv", "a,b,label\n" + "1,2,x\n" * 400_000, "larger than 2 MB"),
        ("wide.csv", ",".join(f"c{i}" for i in range(3000)) + ",label\n" + ",".join(["1"] * 3000) + ",x\n", "3000 feature columns; the page trains tables of at most 64"),
    ],
)
def test_a_bad_upload_shows_one_line_and_breaks_nothing(client, name, text, expected):
    with client.websocket_connect(f"/ws?token={TOKEN}") as ws:
        hello(ws)
        ws.send_json({"type": "upload", "name": name, "text": text})
        message = receive(ws, "error")["message"]
        assert expected in message and "\n" not in message and str(client.app.state.playground.uploads_dir) not in message
        ws.send_json({"type": "step"})
        assert receive(ws, "frame")["epoch"] == 1  # the circle session is still there


def test_import_takes_an_exported_config_back_and_refuses_what_does_not_fit(client):
    with client.websocket_connect(f"/ws?token={TOKEN}") as ws:
        state, _ = hello(ws, TF_LINK + "&networkShape=6&activation=relu&optimizer=adam&learningRate=0.01&loss=cross_entropy")
        ws.send_json({"type": "export"})
        text = receive(ws, "yaml")["text"]
        ws.send_json({"type": "set", "changes": {"networkShape": "2"}})
        receive(ws, "state")
        ws.send_json({"type": "import", "yaml": text})
        imported = receive(ws, "state")
        assert parse_hash(imported["hash"]).options == parse_hash(state["hash"]).options  # the seed now written as its number
        for link in ("problem=regression&networkShape=4,2&learningRate=0.1&seed=5", "regularization=L1&regularizationRate=0.01&seed=5"):
            state, _ = hello(ws, link)  # the Playground's own model: the page's rate is twice the config's
            ws.send_json({"type": "export"})
            ws.send_json({"type": "import", "yaml": receive(ws, "yaml")["text"]})
            assert parse_hash(receive(ws, "state")["hash"]).options == parse_hash(state["hash"]).options
        ws.send_json({"type": "import", "yaml": (REPO / "configs" / "mnist_mlp.yaml").read_text()})
        assert "does not fit the playground page" in receive(ws, "error")["message"]
        ws.send_json({"type": "import", "yaml": "model: [1"})
        assert "imported config" in receive(ws, "error")["message"]


def test_two_pages_have_their_own_sessions(client):
    with client.websocket_connect(f"/ws?token={TOKEN}") as first, client.websocket_connect(f"/ws?token={TOKEN}") as second:
        a, _ = hello(first)
        b, _ = hello(second, TF_LINK.replace("dataset=circle", "dataset=xor"))
        assert a["session"] != b["session"] and (a["data_name"], b["data_name"]) == ("circle", "xor")
        train_steps(first, 3)
        second.send_json({"type": "step"})
        assert receive(second, "frame")["epoch"] == 1
        assert len(client.app.state.playground.pages) == 2
        second.send_json({"type": "upload", "name": "three.csv", "text": CSV_3})
        receive(second, "state")
        uploads = client.app.state.playground.uploads_dir
        assert len(list(uploads.iterdir())) == 1
    for _ in range(100):
        if not client.app.state.playground.pages and not list(uploads.iterdir()):
            break
        time.sleep(0.05)
    assert client.app.state.playground.pages == {}  # closing a page stops and forgets its session ...
    assert list(uploads.iterdir()) == []  # ... and deletes its upload


def test_malformed_messages_get_an_error_not_a_disconnect(client):
    with client.websocket_connect(f"/ws?token={TOKEN}") as ws:
        ws.send_json({"type": "step"})
        assert "hello first" in receive(ws, "error")["message"]
        ws.send_text("not json")
        assert "not JSON" in receive(ws, "error")["message"]
        hello(ws)
        for message, expected in (
            ({"type": "__init__"}, "unknown message type"),
            ({"type": "edit", "layer": "x"}, "malformed edit message"),
            ({"type": "edit", "kind": "bias", "layer": float("inf"), "unit": 0, "value": 1}, "malformed edit message (OverflowError"),
            ({"type": "set", "changes": [1]}, "malformed set message"),
            ({"type": "focus", "node": "a:b"}, "malformed focus message"),
        ):
            ws.send_text(json.dumps(message))
            assert expected in receive(ws, "error")["message"]
        ws.send_text("[" * 100_000)
        assert "nested too deeply" in receive(ws, "error")["message"]
        ws.send_json({"type": "step"})
        assert receive(ws, "frame")["epoch"] == 1


# ------------------------------------------------------------------------------------ the command


def test_the_command_prints_the_url_first_and_stops_cleanly_on_ctrl_c(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "nnctl", "playground", "--web", "--no-browser", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and "/?token=" in url
        assert urlopen(url, timeout=10).status == 200
        with pytest.raises(HTTPError) as refused:
            urlopen(url.split("?")[0], timeout=10)
        assert refused.value.code == 403
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0 and "Traceback" not in stderr and "stopped" in stderr


def test_ctrl_c_right_after_the_url_stops_cleanly(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "nnctl", "playground", "--web", "--no-browser", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert process.stdout.readline().startswith("http://127.0.0.1:")
    process.send_signal(signal.SIGINT)  # before uvicorn has taken over the signals
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0 and "Traceback" not in stderr and "stopped" in stderr


def test_a_public_host_is_warned_about_and_a_taken_port_is_one_line(tmp_path):
    from nnctl.playground.web.server import bind

    taken = bind("127.0.0.1", 0)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "nnctl", "playground", "--web", "--no-browser", "--port", str(taken.getsockname()[1])],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )  # fmt: skip
    finally:
        taken.close()
    assert result.returncode == 2 and "cannot listen on 127.0.0.1" in result.stderr and "--port 0 picks a free port" in result.stderr
    assert "Traceback" not in result.stderr
    for args, expected in (
        (["--host", "192.0.2.1", "--port", "0"], "--host must be an address of this machine"),
        (["--port", "70000"], "--port: must be between 0 and 65535"),
        (["--dataset", "xor", "--frames", "3"], "--dataset, --frames: the terminal playground's options"),
    ):
        result = nnctl("playground", "--web", "--no-browser", *args, cwd=tmp_path)
        assert result.returncode == 2 and expected in result.stderr and result.stderr.count("\n") == 1, result.stderr
    process = subprocess.Popen(
        [sys.executable, "-m", "nnctl", "playground", "--web", "--no-browser", "--port", "0", "--host", "0.0.0.0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        assert process.stdout.readline().startswith("http://0.0.0.0:")
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    assert "warning: --host 0.0.0.0" in stderr


def test_an_error_after_an_upload_names_the_file_as_the_user_did(client):
    with client.websocket_connect(f"/ws?token={TOKEN}") as ws:
        hello(ws)
        ws.send_json({"type": "upload", "name": "three.csv", "text": CSV_3})
        receive(ws, "state")
        ws.send_json({"type": "set", "changes": {"problem": "regression"}})  # class names are not numbers
        message = receive(ws, "error")["message"]
        assert "three.csv" in message and str(client.app.state.playground.uploads_dir) not in message
        assert len(list(client.app.state.playground.uploads_dir.iterdir())) == 1
        ws.send_json({"type": "upload", "name": "again.csv", "text": CSV_3})
        receive(ws, "state")
        assert [p.name.split("-", 2)[-1] for p in client.app.state.playground.uploads_dir.iterdir()] == ["again.csv"]


def test_any_file_name_can_be_uploaded_and_saved(client, tmp_path):
    with client.websocket_connect(f"/ws?token={TOKEN}") as ws:
        hello(ws)
        for name, kept in (("my data (1).csv", "my_data__1_.csv"), ("..", "upload.csv"), ("C:\\Users\\me\\x y.csv", "x_y.csv"), ("é" * 200 + ".csv", "_" * 50 + ".csv")):
            ws.send_json({"type": "upload", "name": name, "text": CSV_3})
            assert receive(ws, "state")["data_name"] == kept
        train_steps(ws, 2)
        ws.send_json({"type": "save_run"})
        saved = receive(ws, "saved")
    run = tmp_path / "runs" / os.path.basename(saved["path"])
    assert (run / "data" / ("_" * 50 + ".csv")).is_file() and nnctl_in_process("eval", str(run)).returncode == 0


def test_a_seed_with_any_characters_round_trips_through_the_hash(client):
    with client.websocket_connect(f"/ws?token={TOKEN}") as ws:
        state, _ = hello(ws, "seed=a%26b%3Dc&dataset=xor")
        assert "seed=a%26b%3Dc" in state["hash"] and state["notes"] == []
        ws.send_json({"type": "set", "changes": {"noise": "20"}})
        state = receive(ws, "state")
        assert "seed=a%26b%3Dc" in state["hash"] and "noise=20" in state["hash"]
    assert parse_hash(state["hash"]).options.seed == seed_from_text("a&b=c")


@pytest.mark.parametrize("regularization", ["L1", "L2"])
def test_one_sgd_step_is_the_playgrounds_step(regularization):
    """The Playground's update (its nn.ts), by hand in float64 for a network without hidden layers, o = tanh(x W + b):
    W -= lr mean_i (o_i - t_i)(1 - o_i^2) x_i + lr rate R'(W), b -= lr mean_i (o_i - t_i)(1 - o_i^2), with R' = sign
    (L1) or W (L2), on one batch of all training rows.  nnctl's page must take the same step."""
    from nnctl.playground.session import PlaygroundSession

    state = parse_hash(f"dataset=gauss&networkShape=&seed=3&learningRate=0.3&regularization={regularization}&regularizationRate=0.1&batchSize=250")
    session = PlaygroundSession(state.options)
    (weight, bias), = session.dense_weights()
    w, b = weight.astype(np.float64).copy(), bias.astype(np.float64).copy()
    x, t = session.train.x.astype(np.float64), 2.0 * session.train.y - 1.0
    o = np.tanh(x @ w + b)[:, 0]
    delta = (o - t) * (1 - o * o)
    penalty = np.sign(w) if regularization == "L1" else w
    expected_w = w - 0.3 * (x * delta[:, None]).mean(axis=0)[:, None] - 0.3 * 0.1 * penalty
    expected_b = b - 0.3 * delta.mean()
    session.step_epoch()
    (weight, bias), = session.dense_weights()
    np.testing.assert_allclose(weight, expected_w, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(bias, expected_b, rtol=1e-5, atol=1e-7)
