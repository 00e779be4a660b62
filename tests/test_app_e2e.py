"""The web app served on a free localhost port: driven by gradio_client, by `python app.py` itself, and
by a real browser (Playwright + Debian's Chromium)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("gradio")
pytest.importorskip("gradio_client")

from app_helpers import BACH, ROOT, free_port, make_tiny_checkpoint  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from gradio_client.utils import QueueError  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = ROOT / "docs" / "app.png"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="module")
def server(checkpoint):
    from musicmha.app import add_arguments
    from musicmha.app.server import prepare

    port = free_port()
    args = add_arguments(argparse.ArgumentParser()).parse_args(
        ["--checkpoint", str(checkpoint), "--port", str(port), "--concurrency", "1"])
    app, kwargs = prepare(args)
    app.launch(prevent_thread_lock=True, quiet=True, **kwargs)
    yield f"http://127.0.0.1:{port}/"
    app.close()


def test_generate_from_an_example_returns_audio_image_and_midi(server):
    client = Client(server, verbose=False)
    status, seed, *rest = client.predict(handle_file(str(BACH)), "tokens", 48, api_name="/generate")
    audio, image, midi = rest[0], rest[4], rest[8]
    assert "Done" in status and isinstance(seed, (int, float))
    assert Path(audio).read_bytes()[:4] == b"RIFF"
    assert Path(image).read_bytes()[:4] == b"\x89PNG"
    assert Path(midi).read_bytes()[:4] == b"MThd"
    assert rest[1] is None and rest[5] is None and rest[9] is None  # one variation asked for


def test_preview_endpoint(server):
    audio, image, info = Client(server, verbose=False).predict(handle_file(str(BACH)), api_name="/preview")
    assert Path(audio).is_file() and Path(image).is_file() and "84 notes" in info


def test_bad_upload_is_an_app_error(server, tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"this is not MIDI")
    client = Client(server, verbose=False)
    with pytest.raises(AppError, match="bad.mid: not a MIDI file"):
        client.predict(handle_file(str(bad)), "tokens", 16, api_name="/generate")
    # The app keeps serving.
    assert "Done" in client.predict(None, "tokens", 16, api_name="/generate")[0]


def test_two_concurrent_clients_are_both_served(server):
    def one(seed: int) -> tuple:
        return Client(server, verbose=False).predict(handle_file(str(BACH)), "tokens", 32, 1.0, 0, 1.0, seed,
                                                     False, api_name="/generate")

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, [1, 2]))
    assert [r[1] for r in results] == [1, 2] and all("Done" in r[0] for r in results)


def test_stop_ends_the_generation(server, monkeypatch):
    import musicmha.app.handlers as handlers

    slow_down = handlers._Job._callback

    def slow(self, step, tokens):  # an untrained model may end early: make each token take a while
        time.sleep(0.02)
        slow_down(self, step, tokens)

    monkeypatch.setattr(handlers._Job, "_callback", slow)
    job = Client(server, verbose=False).submit(None, "tokens", 2048, 1.0, 0, 1.0, 3, False, api_name="/generate")
    deadline = time.monotonic() + 20
    while not any(t.name == "musicmha-generate" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "generation never started"
        time.sleep(0.1)
    job.cancel()
    while any(t.name == "musicmha-generate" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the worker kept generating after Stop"
        time.sleep(0.1)


def test_a_full_queue_says_busy(checkpoint, monkeypatch):
    import musicmha.app.handlers as handlers
    from musicmha.app import add_arguments
    from musicmha.app.server import prepare

    run = handlers._Job._run

    def slow(self, prompt, kwargs):  # each generation takes a second, whatever the model does
        time.sleep(1.0)
        run(self, prompt, kwargs)

    monkeypatch.setattr(handlers._Job, "_run", slow)
    port = free_port()
    app, kwargs = prepare(add_arguments(argparse.ArgumentParser()).parse_args(
        ["--checkpoint", str(checkpoint), "--port", str(port), "--queue-size", "1"]))
    app.launch(prevent_thread_lock=True, quiet=True, **kwargs)
    try:
        jobs = [Client(f"http://127.0.0.1:{port}/", verbose=False).submit(None, "tokens", 8, api_name="/generate")
                for _ in range(3)]
        outcomes = []
        for job in jobs:
            try:
                outcomes.append(job.result()[0])
            except QueueError as error:
                outcomes.append(str(error))
    finally:
        app.close()
    assert sum("Done" in o for o in outcomes) == 2 and any("Queue is full" in o for o in outcomes)


@pytest.mark.slow
def test_python_app_py_starts_on_localhost(checkpoint, tmp_path):
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port)}
    process = subprocess.Popen([sys.executable, "app.py", "--checkpoint", str(checkpoint)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=(tmp_path / "log").open("w"))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    assert response.status == 200
                break
            except OSError:
                assert process.poll() is None, (tmp_path / "log").read_text()
                assert time.monotonic() < deadline, "the app did not start"
                time.sleep(0.5)
        if shutil.which("ss"):  # localhost only unless --host
            listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
            assert f"127.0.0.1:{port}" in listening
            assert f"0.0.0.0:{port}" not in listening and f"*:{port}" not in listening
    finally:
        process.terminate()
        process.wait(10)


def _browser(playwright):
    return playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
              "--no-first-run"])


@pytest.mark.slow
def test_browser_example_generate_listen_download(server, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing: apt-get install -y chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright missing: pip install playwright")
    external: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = _browser(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("request", lambda r: external.append(r.url)
                if not r.url.startswith(("http://127.0.0.1", "data:", "blob:")) else None)
        page.goto(server)
        page.locator("#example input").click()
        page.get_by_role("option", name="bach_bwv66.6_chorale").click()
        page.wait_for_selector("#prompt-audio [data-testid^='waveform-']", timeout=30_000)  # heard before generating
        page.locator("#variations input[type=number]").fill("2")
        page.locator("#variations input[type=number]").press("Enter")
        page.locator("#generate").click()
        for slot in (1, 2):
            page.wait_for_selector(f"#result-audio-{slot} [data-testid^='waveform-']", timeout=60_000)
            link = page.locator(f"#result-midi-{slot} a[data-testid='download-link']")
            link.wait_for(timeout=30_000)
            assert f"variation-{slot}" in (link.get_attribute("href") or "")
        assert "Done: 2 variation(s)" in page.locator("#status").inner_text()
        page.screenshot(path=tmp_path / "app.png", full_page=True)

        info = "document.querySelector('#prompt-info').innerText"
        page.locator("#continue-2").click()  # the second result becomes the prompt ...
        page.wait_for_function(f"{info}.includes('Prompt:') && !{info}.includes('84 notes')", timeout=30_000)
        page.locator("#undo").click()  # ... and undo brings the chorale back
        page.wait_for_function(f"{info}.includes('Prompt: 84 notes')", timeout=30_000)
        browser.close()
    assert (tmp_path / "app.png").stat().st_size > 10_000
    assert external == []  # offline: no fonts, scripts or analytics from elsewhere
    if os.environ.get("MUSICMHA_UPDATE_SCREENSHOT"):
        _save_readme_screenshot(tmp_path / "app.png")


def _save_readme_screenshot(source: Path) -> None:
    """docs/app.png for the README: the page, shrunk and palette-reduced to stay well under 300 KB."""
    from PIL import Image

    image = Image.open(source).convert("RGB")
    image = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.LANCZOS)
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(SCREENSHOT, optimize=True)
    assert SCREENSHOT.stat().st_size < 300_000
