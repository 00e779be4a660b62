"""The app under load and at its edges, served by `python app.py` in its own process on a free localhost
port: 16 clients x 3 generations (served or told "busy", none lost; memory back near its baseline; temporary
files bounded, and gone when the server stops), the address it binds, upload and length limits, and paths
from clients that point outside the app's folders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("gradio")
pytest.importorskip("gradio_client")
psutil = pytest.importorskip("psutil")

from app_helpers import BACH, ROOT, free_port, make_tiny_checkpoint
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError

CLIENTS, REQUESTS = 16, 3
BUSY = "Queue is full"  # what gradio_client raises on HTTP 503 from the queue (its text, not the server's)


class App:
    """`python app.py` in a subprocess, with its own temporary folders so its files can be counted."""

    def __init__(self, folder: Path, checkpoint: Path, *args: str) -> None:
        self.port, self.tmp, self.gradio_tmp = free_port(), folder / "tmp", folder / "gradio"
        self.tmp.mkdir(parents=True)
        self.gradio_tmp.mkdir()
        env = {**os.environ, "TMPDIR": str(self.tmp), "GRADIO_TEMP_DIR": str(self.gradio_tmp),
               "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
        self.log = folder / "app.log"
        self.process = subprocess.Popen([sys.executable, "app.py", "--checkpoint", str(checkpoint),
                                         "--port", str(self.port), *args], cwd=ROOT, env=env,
                                        stdout=subprocess.DEVNULL, stderr=self.log.open("w"))
        self.url = f"http://127.0.0.1:{self.port}/"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(self.url, timeout=5):
                    break
            except OSError:
                assert self.process.poll() is None, self.log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the app did not start in 120 s"
                time.sleep(0.3)

    def rss(self) -> int:
        return psutil.Process(self.process.pid).memory_info().rss

    def files(self) -> int:
        """Files the app has written: its own folder (under TMPDIR) and gradio's cache."""
        return sum(1 for root in (self.tmp, self.gradio_tmp) for p in root.rglob("*") if p.is_file())

    def listening(self) -> set[str]:
        return {c.laddr.ip for c in psutil.Process(self.process.pid).net_connections("tcp")
                if c.status == psutil.CONN_LISTEN and c.laddr.port == self.port}

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


def _generate(url: str, seed: int) -> tuple:
    client = Client(url, verbose=False, download_files=False)
    return client.predict(handle_file(str(BACH)), "tokens", 16, 1.0, 0, 1.0, seed, False, api_name="/generate")


@pytest.mark.slow
def test_16_clients_3_generations_each(checkpoint, tmp_path):
    app = App(tmp_path, checkpoint, "--queue-size", "8")
    try:
        assert app.listening() == {"127.0.0.1"}  # localhost only without --host
        _generate(app.url, 0)  # loads the model: the baseline is the warm server
        baseline, files_before = app.rss(), app.files()
        peak, sampling = [baseline], threading.Event()

        def sample() -> None:
            while not sampling.wait(0.05):
                peak.append(app.rss())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()

        def client(index: int) -> list[str]:
            outcomes = []
            for request in range(REQUESTS):
                seed = index * REQUESTS + request
                try:
                    status, used, *_ = _generate(app.url, seed)
                    outcomes.append("ok" if "Done" in status and used == seed else f"wrong: {status} {used}")
                except QueueError as error:
                    outcomes.append("busy" if BUSY in str(error) else f"queue error: {error}")
                except Exception as error:  # noqa: BLE001 -- anything else is a lost or broken request
                    outcomes.append(f"{type(error).__name__}: {error}")
            return outcomes

        started = time.monotonic()
        with ThreadPoolExecutor(CLIENTS) as pool:
            outcomes = [o for per_client in pool.map(client, range(CLIENTS)) for o in per_client]
        seconds = time.monotonic() - started
        sampling.set()
        sampler.join()
        time.sleep(1.0)  # let the last responses finish streaming
        after, files_after = app.rss(), app.files()
        served, busy = outcomes.count("ok"), outcomes.count("busy")
        figures = {"requests": len(outcomes), "served": served, "busy": busy, "seconds": round(seconds, 1),
                       "rss_baseline_mb": round(baseline / 2**20), "rss_peak_mb": round(max(peak) / 2**20),
                       "rss_after_mb": round(after / 2**20), "files_before": files_before, "files_after": files_after}
        print("load:", json.dumps(figures))
        assert len(outcomes) == CLIENTS * REQUESTS and served + busy == len(outcomes), outcomes
        assert served >= CLIENTS, figures  # the queue of 8 serves steadily; "busy" only beyond it
        assert after - baseline < max(128 * 2**20, baseline // 3), figures  # allocator slack, not growth per request
        # Each served request leaves its files (the client may still download them): bounded by a few per
        # request, swept after an hour, and all gone when the server stops.
        assert files_after - files_before <= 8 * served, figures
        assert "Traceback" not in app.log.read_text()
    finally:
        code = app.stop(signal.SIGTERM)
    leftover = [str(p) for p in app.tmp.rglob("*") if p.is_file()]
    assert leftover == [], leftover  # the app's temporary folder is removed on SIGTERM too
    # Gradio's own cache (copies of what it served, GRADIO_TEMP_DIR) is not removed at shutdown: its
    # delete_cache sweep (hourly, files older than 2 h) bounds it instead; the count was checked above.
    assert code in (0, -signal.SIGTERM, 128 + signal.SIGTERM), code


@pytest.mark.slow
def test_host_option_binds_every_interface(checkpoint, tmp_path):
    app = App(tmp_path, checkpoint, "--host", "0.0.0.0")
    try:
        assert app.listening() == {"0.0.0.0"}
    finally:
        app.stop()


@pytest.fixture(scope="module")
def small_app(checkpoint, tmp_path_factory):
    """A server that accepts uploads up to 1,000 bytes (the Bach prompt is 920 bytes)."""
    app = App(tmp_path_factory.mktemp("small"), checkpoint, "--max-upload-mb", "0.001")
    yield app
    app.stop()


def _post(url: str, body: dict) -> tuple[int, str]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _call(app: App, endpoint: str, data: list) -> str:
    """The raw REST API (what any HTTP client can send): POST the inputs, then read the event stream."""
    status, text = _post(f"{app.url}gradio_api/call/{endpoint}", {"data": data})
    assert status == 200, text
    event_id = json.loads(text)["event_id"]
    with urllib.request.urlopen(f"{app.url}gradio_api/call/{endpoint}/{event_id}", timeout=60) as response:
        return response.read().decode()


@pytest.mark.slow
def test_uploads_over_the_limit_are_refused(small_app, tmp_path):
    client = Client(small_app.url, verbose=False, download_files=False)
    assert "Done" in client.predict(handle_file(str(BACH)), "tokens", 8, api_name="/generate")[0]
    padded = tmp_path / "padded.mid"  # valid MIDI, 1,500 bytes: over our limit, under gradio's hard stop
    padded.write_bytes(BACH.read_bytes() + b"\0" * 580)
    with pytest.raises(AppError, match="larger than 1,000 bytes"):
        client.predict(handle_file(str(padded)), "tokens", 8, api_name="/generate")
    huge = tmp_path / "huge.mid"  # over gradio's own limit (twice ours): refused at upload
    huge.write_bytes(BACH.read_bytes() + b"\0" * 5000)
    with pytest.raises(Exception, match="(?i)too large|exceeds|maximum"):
        client.predict(handle_file(str(huge)), "tokens", 8, api_name="/generate")


@pytest.mark.slow
def test_lengths_over_the_cap_are_refused(small_app):
    client = Client(small_app.url, verbose=False, download_files=False)
    for unit, length, message in [("tokens", 4096, "2048 tokens"), ("bars", 33, "32 bars"),
                                  ("seconds", 61, "60 seconds")]:
        with pytest.raises(AppError, match=message):
            client.predict(None, unit, length, api_name="/generate")


@pytest.mark.slow
def test_client_paths_outside_the_app_folders_are_refused(small_app, tmp_path):
    secret = tmp_path / "secret.mid"  # a readable, valid MIDI file the app never handed out
    secret.write_bytes(BACH.read_bytes())
    for path in (str(secret), "/etc/passwd", f"{small_app.gradio_tmp}/../../secret.mid"):
        events = _call(small_app, "generate", [{"path": path, "meta": {"_type": "gradio.FileData"}},
                                               "tokens", 8, 1.0, 0, 1.0, 1, False, 1, 0, None,
                                               "Keep the prompt's instruments", [0], True, False, 0,
                                               "the model's choice", False, None])
        assert "event: error" in events and "Done" not in events, events
        assert "not a MIDI file" not in events  # refused before the file was read
    for path in ("/etc/passwd", str(secret), f"{small_app.tmp}/../secret.mid"):
        try:
            with urllib.request.urlopen(f"{small_app.url}gradio_api/file={path}", timeout=10) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        assert status in (403, 404), (path, status)
