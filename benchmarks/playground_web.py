"""The web playground's training speed against ``nnctl train`` on the same config, side by side in one run.

    python benchmarks/playground_web.py            # about a minute on 2 cores
    python benchmarks/playground_web.py --seconds 3 --repeats 3

The config is the Playground's spiral with a 2-8-8-2 tanh network (cross-entropy, two logits), SGD lr 0.03,
batch 10, 250 training rows, one BLAS thread (what both use for a network this size).

- ``nnctl train``: ``nnctl.training.run_training`` in-process on the page's exported config with E epochs (E
  chosen to take about --seconds); epochs per second = E / the wall time of the whole run (data, training,
  every epoch's metrics row, checkpoints, summary), as a user waits for it.
- the web page: a real server (``nnctl playground --web``'s app under uvicorn, on loopback) and a WebSocket
  client that says hello with the same hash, presses play and reads frames for --seconds; epochs per second =
  the epochs the frames report / the seconds between the first and last frame.  The server evaluates the
  whole training and test sets after every epoch (the page shows both losses) and builds >= 10 frames a
  second (heatmaps of the output and of every neuron, weights, confusion matrix), all inside that time.

The issue's target: the page keeps >= 50 % of nnctl train's epochs per second.  Also printed: frames per
second (target >= 10) and the median bytes per frame.  The two are measured in turns, --repeats times.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HASH = "dataset=spiral&networkShape=8,8&activation=tanh&learningRate=0.03&batchSize=10&percTrainData=50&noise=0&seed=1&loss=cross_entropy&init=xavier_uniform"


def measure_train(config_text: str, epochs: int) -> float:
    from threadpoolctl import threadpool_limits

    from nnctl.config import config_from_text
    from nnctl.training import run_training

    loaded = config_from_text(config_text.replace("epochs: 1\n", f"epochs: {epochs}\n"), "benchmark")
    with tempfile.TemporaryDirectory() as out, threadpool_limits(1):
        started = time.perf_counter()
        run_training(loaded, Path(out), command=["bench"])
        return epochs / (time.perf_counter() - started)


def start_server():
    import uvicorn

    from nnctl.playground.web.app import create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    runs = tempfile.mkdtemp()
    app = create_app(token="bench", runs_dir=Path(runs))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, sock.getsockname()[1]


async def measure_page(port: int, seconds: float) -> tuple[float, float, int, str]:
    import websockets

    async with websockets.connect(f"ws://127.0.0.1:{port}/ws?token=bench", max_size=None) as ws:
        await ws.send(json.dumps({"type": "hello", "hash": HASH}))
        config = None
        while True:  # the state, the first frame; then the exported config
            message = json.loads(await ws.recv())
            if message["type"] == "frame":
                break
        await ws.send(json.dumps({"type": "export"}))
        while config is None:
            message = json.loads(await ws.recv())
            config = message["text"] if message["type"] == "yaml" else None
        await ws.send(json.dumps({"type": "play"}))
        frames, sizes = [], []
        deadline = None
        while True:
            raw = await ws.recv()
            message = json.loads(raw)
            if message["type"] != "frame" or not message["running"]:
                continue
            now = time.perf_counter()
            frames.append((now, message["epoch"]))
            sizes.append(len(raw))
            deadline = deadline or now + seconds
            if now >= deadline:
                break
        await ws.send(json.dumps({"type": "pause"}))
    (t0, e0), (t1, e1) = frames[0], frames[-1]
    return (e1 - e0) / (t1 - t0), (len(frames) - 1) / (t1 - t0), int(statistics.median(sizes)), config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    server, port = start_server()
    page_rates, train_rates, fps_all = [], [], []
    try:
        for k in range(args.repeats):
            page, fps, size, config = asyncio.run(measure_page(port, args.seconds))
            config = config.split("\ntraining:\n")[0] + "\ntraining:\n" + "\n".join(
                "  epochs: 1" if line.startswith("  epochs:") else line for line in config.split("\ntraining:\n")[1].splitlines()
            ) + "\n"
            epochs = max(50, int(page * args.seconds))
            train = measure_train(config, epochs)
            page_rates.append(page), train_rates.append(train), fps_all.append(fps)
            print(f"repeat {k + 1}: page {page:7.1f} epochs/s ({fps:4.1f} frames/s, {size / 1024:.0f} KiB/frame)   nnctl train {train:7.1f} epochs/s   ratio {page / train:.2f}")
    finally:
        server.should_exit = True
    ratios = [p / t for p, t in zip(page_rates, train_rates)]
    print(f"\nmachine: {platform.machine()}, {platform.processor() or 'cpu'}, Python {sys.version.split()[0]}")
    print(f"page / nnctl train, epochs per second: median {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f}); target >= 0.50")
    print(f"frames per second while playing: median {statistics.median(fps_all):.1f}; target >= 10")


if __name__ == "__main__":
    main()
