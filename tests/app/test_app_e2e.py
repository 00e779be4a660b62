"""The web app served on a free localhost port: driven by gradio_client, by `python app.py` itself, and
by a real browser (Playwright + Debian's Chromium)."""

from __future__ import annotations

import argparse
import os
import re
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

from app_helpers import BACH, ROOT, free_port, make_tiny_checkpoint, slow_down_generation  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from gradio_client.utils import QueueError  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


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
    assert 'data-audio="result-audio-1"' in image and "data:image/png;base64," in image  # roll + playhead
    assert Path(midi).read_bytes()[:4] == b"MThd"
    assert rest[1] is None and rest[5] == "" and rest[9] is None  # one variation asked for


def test_regenerate_endpoint_keeps_the_rest_and_refuses_a_bad_range(server):
    client = Client(server, verbose=False)
    status, seed, *rest = client.predict(handle_file(str(BACH)), 2, 3, 1.0, 0, 1.0, 5, False,
                                         api_name="/regenerate")
    assert status.startswith("Done: 1 variation(s) of bars 2-3") and seed == 5
    assert 'class="mm-range"' in rest[4] and Path(rest[8]).read_bytes()[:4] == b"MThd"
    with pytest.raises(AppError, match="bars 3-2: the range is reversed"):
        client.predict(handle_file(str(BACH)), 3, 2, api_name="/regenerate")


def test_preview_endpoint(server):
    box, current, audio, roll, info, _ = Client(server, verbose=False).predict(handle_file(str(BACH)),
                                                                             api_name="/preview")
    assert box is None and Path(current).read_bytes() == BACH.read_bytes() and Path(audio).is_file()
    assert 'data-audio="prompt-audio"' in roll and "84 notes" in info


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
    slow_down_generation(monkeypatch, 0.02)
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
    from musicmha.app import add_arguments
    from musicmha.app.job import GenerationJob
    from musicmha.app.server import prepare

    run = GenerationJob._run

    def slow(self):  # each generation takes a second, whatever the model does
        time.sleep(1.0)
        run(self)

    monkeypatch.setattr(GenerationJob, "_run", slow)
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


@pytest.fixture
def page(server):
    """A fresh Chromium page on the app, with a list of requests that left localhost."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing: apt-get install -y chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright missing: pip install playwright")
    with sync_api.sync_playwright() as playwright:
        browser = _browser(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.external = []
        page.on("request", lambda r: page.external.append(r.url)
                if not r.url.startswith(("http://127.0.0.1", "data:", "blob:")) else None)
        started = time.monotonic()
        page.goto(server)
        page.wait_for_selector("#generate")
        TIMINGS["page ready"] = time.monotonic() - started
        yield page
        browser.close()


TIMINGS: dict[str, float] = {}  # measured in the browser; printed with -s
INFO = "document.querySelector('#prompt-info').innerText"
STATUS = "document.querySelector('#status').innerText"


def _example(page, name: str = "bach_bwv66.6_chorale") -> None:
    started = time.monotonic()
    page.locator("#example input").click()
    page.get_by_role("option", name=name).click()
    page.wait_for_function(f"{INFO}.includes({name!r})", timeout=30_000)
    page.wait_for_selector("#prompt-audio audio[src]", state="attached", timeout=30_000)  # heard before generating
    TIMINGS["example previewed"] = time.monotonic() - started


def _set_slider(page, elem_id: str, value: int) -> None:
    field = page.locator(f"#{elem_id} input[type=number]")
    field.fill(str(value))
    field.press("Enter")


def _watch_status(page) -> None:
    """Remember every status text from now on, so a wait cannot mistake the previous run's 'Done'."""
    page.evaluate("""(() => { window.statuses = [];
        const status = document.querySelector('#status');
        new MutationObserver(() => window.statuses.push(status.innerText))
            .observe(status, {subtree: true, childList: true, characterData: true}); })()""")


def _generate(page, slots: int, timeout: float = 60_000) -> None:
    started = time.monotonic()
    _watch_status(page)
    page.locator("#generate").click()
    try:
        page.wait_for_function("window.statuses.some(s => s.startsWith('Generating')) && "
                               f"{STATUS}.startsWith('Done')", timeout=timeout)
    except Exception:
        raise AssertionError(f"no 'Done'; statuses: {page.evaluate('window.statuses')}") from None
    for slot in range(1, slots + 1):
        page.wait_for_selector(f"#result-audio-{slot} audio[src]", state="attached", timeout=timeout)
    TIMINGS[f"generate {slots} x (to 'Done')"] = time.monotonic() - started


def _playhead(page, slot: int) -> tuple[float, str]:
    return page.evaluate(f"""(() => {{
        const head = document.querySelector('#result-roll-{slot} .mm-playhead');
        return [parseFloat(head.style.left || '0'), getComputedStyle(head).display]; }})()""")


def _toasts(page, text: str) -> int:
    return page.evaluate(f"""[...document.querySelectorAll('[data-testid="toast-body"]')]
        .filter(e => e.innerText.includes({text!r})).length""")


def _skip_without_browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing: apt-get install -y chromium")


@pytest.mark.slow
def test_browser_example_generate_listen_with_playhead_download_continue_undo_redo(page, tmp_path):
    _example(page)
    _set_slider(page, "variations", 2)
    _generate(page, 2)
    for slot in (1, 2):
        link = page.locator(f"#result-midi-{slot} a[data-testid='download-link']")
        link.wait_for(timeout=30_000)
        assert f"variation-{slot}" in (link.get_attribute("href") or "")
    assert "Done: 2 variation(s)" in page.locator("#status").inner_text()
    # The roll marks the prompt's end; the playhead follows the audio and stops with it.
    assert page.locator("#result-roll-1 .mm-roll img").count() == 1
    left, display = _playhead(page, 1)
    assert display == "none"
    page.locator("#result-audio-1").scroll_into_view_if_needed()  # the bar range under the prompt's roll moved it down
    player = page.locator("#result-audio-1 audio").bounding_box()
    page.mouse.click(player["x"] + 18, player["y"] + player["height"] / 2)  # the player's own play button
    page.wait_for_function("!document.querySelector('#result-audio-1 audio').paused", timeout=10_000)
    time.sleep(0.8)
    first, display = _playhead(page, 1)
    time.sleep(0.8)
    second, _ = _playhead(page, 1)
    assert display == "block" and 0 < first < second  # moves while it plays
    page.mouse.click(player["x"] + 18, player["y"] + player["height"] / 2)  # pause
    page.wait_for_function("document.querySelector('#result-audio-1 audio').paused", timeout=10_000)
    # `paused` turns true at once, the pause event (the playhead's last move) follows: wait for that event
    page.wait_for_function("document.querySelector('#result-roll-1 .mm-roll').dataset.playing === '0'",
                           timeout=10_000)
    stopped, _ = _playhead(page, 1)
    time.sleep(0.6)
    assert _playhead(page, 1)[0] == stopped  # ... and stops with it
    audio_time = page.evaluate("document.querySelector('#result-audio-1 audio').currentTime")
    x0, x1, end = page.evaluate("""(() => { const r = document.querySelector('#result-roll-1 .mm-roll');
        return [+r.dataset.x0, +r.dataset.x1, +r.dataset.end]; })()""")
    assert stopped == pytest.approx(100 * (x0 + (x1 - x0) * audio_time / end), abs=0.05)
    page.screenshot(path=tmp_path / "app.png", full_page=True)
    short_end = end
    page.locator("#full-view input").check()  # the whole piece: a longer time axis from the piece's start
    page.wait_for_function(f"+document.querySelector('#result-roll-1 .mm-roll').dataset.end > {short_end} + 5",
                           timeout=30_000)

    page.locator("#continue-2").click()  # the second result becomes the prompt, named after the piece ...
    page.wait_for_function(f"{INFO}.includes('bach_bwv66.6_chorale + 1 continuation')", timeout=30_000)
    assert "bach_bwv66.6_chorale + 1 continuation" in page.locator("#history").inner_text()
    page.wait_for_function("document.querySelector('#prompt-audio audio').duration > 0", timeout=10_000)
    page.locator("#undo").click()  # ... undo brings the chorale back ...
    page.wait_for_function(f"{INFO}.includes('84 notes')", timeout=30_000)
    assert page.locator("#undo").is_disabled()  # ... and stops there
    page.locator("#redo").click()  # ... and redo walks forward again
    page.wait_for_function(f"{INFO}.includes('+ 1 continuation')", timeout=30_000)
    assert (tmp_path / "app.png").stat().st_size > 10_000
    assert page.external == []  # offline: no fonts, scripts or analytics from elsewhere


@pytest.mark.slow
def test_browser_stop_keeps_partial_results_in_an_even_grid(page, monkeypatch):
    from musicmha.app.job import GenerationJob

    record = GenerationJob._callback

    def slow(self, step, tokens):  # about 30 tokens a second, whatever the machine: Stop comes mid-run
        time.sleep(0.03)
        return record(self, step, tokens)

    monkeypatch.setattr(GenerationJob, "_callback", slow)
    _example(page)
    _set_slider(page, "variations", 4)
    page.locator("#length input").fill("32")
    _watch_status(page)
    page.locator("#generate").click()
    page.wait_for_function(f"{STATUS}.startsWith('Generating 4 variations')", timeout=30_000)
    assert "queue" not in page.locator("#status").inner_text()  # our own words, no queue jargon
    page.wait_for_function("document.querySelectorAll('#results .mm-roll img').length >= 1", timeout=30_000)
    time.sleep(1.0)
    clicked = time.monotonic()
    page.locator("#stop").click()
    page.wait_for_function(f"{STATUS}.startsWith('Stopped after')", timeout=10_000)
    TIMINGS["Stop to 'Stopped after N bars'"] = time.monotonic() - clicked
    page.wait_for_function(f"/partial variations? kept|nothing is kept/.test({STATUS})", timeout=30_000)
    TIMINGS["Stop to the partial results shown"] = time.monotonic() - clicked
    # issue 30 item 5: the progress was per variation and never past the 32 bars asked, with the time left
    running = [s for s in page.evaluate("window.statuses") if "bars done" in s]
    assert running and all(int(n) <= 32 for s in running
                           for n in re.findall(r"\d+", re.search(r"bars done: ([\d, and]+) of 32", s)[1]))
    assert any("left" in s for s in running)
    status = page.locator("#status").inner_text()
    kept = int(m[1]) if (m := re.search(r"(\d) partial variations? kept", status)) else 0
    with_notes = 0
    time.sleep(1.0)  # the result buttons follow the results
    for slot in range(1, 5):
        if "stopped before its first new notes" in page.locator(f"#result-roll-{slot}").inner_text():
            assert page.locator(f"#continue-{slot}").is_disabled()  # nothing to continue there
            assert page.locator(f"#result-midi-{slot} a").count() == 0
            continue
        with_notes, continued = with_notes + 1, slot
        page.wait_for_selector(f"#result-audio-{slot} audio[src]", state="attached", timeout=10_000)
        page.locator(f"#result-midi-{slot} a[data-testid='download-link']").wait_for(timeout=10_000)
        assert not page.locator(f"#continue-{slot}").is_disabled()
    assert with_notes == kept >= 1, status
    boxes = [page.locator(f"#result-roll-{slot}").bounding_box() for slot in range(1, 5)]
    assert boxes[0]["y"] == boxes[1]["y"] < boxes[2]["y"] == boxes[3]["y"]  # 2 x 2
    assert len({round(b["width"]) for b in boxes}) == 1 and boxes[0]["width"] > 500  # even and readable
    page.locator(f"#continue-{continued}").click()  # a partial result continues like any other
    page.wait_for_function(f"{INFO}.includes('+ 1 continuation')", timeout=30_000)
    monkeypatch.undo()
    _set_slider(page, "variations", 1)
    page.locator("#length input").fill("2")
    _generate(page, 1)  # the page is ready for the next run at once


@pytest.mark.slow
def test_browser_a_corrupt_upload_keeps_the_previous_prompt(page, tmp_path):
    _example(page)
    bad = tmp_path / "corrupt.mid"
    bad.write_bytes(os.urandom(300))
    page.locator("#prompt-file input[type=file]").set_input_files(str(bad))
    page.wait_for_function("""[...document.querySelectorAll('[data-testid="toast-body"]')]
        .some(e => e.innerText.includes('corrupt.mid: not a MIDI file'))""", timeout=30_000)
    time.sleep(1.0)
    assert _toasts(page, "corrupt.mid") == 1  # one message, once
    assert "84 notes" in page.locator("#prompt-info").inner_text()  # the previous prompt is still there
    assert page.locator("#prompt-audio audio[src]").count() == 1
    assert "Error" not in page.locator("#prompt-info").inner_text()
    assert "corrupt.mid" not in page.locator("#prompt-file").inner_text()  # the box is ready for the next file
    good = tmp_path / "my tune.mid"
    shutil.copyfile(ROOT / "data" / "prompts" / "essen_folksong_han1_1.mid", good)
    page.locator("#prompt-file input[type=file]").set_input_files(str(good))
    page.wait_for_function(f"{INFO}.includes('my tune')", timeout=30_000)


@pytest.mark.slow
def test_browser_a_bad_setting_is_one_message_and_changes_nothing(page):
    _example(page)
    page.locator("#settings").get_by_text("More settings").click()
    # issue 30 item 8: with a prompt the tempo box only raised an error; it is inactive now (a prompt keeps its own)
    page.wait_for_function("document.querySelector('#tempo input')?.disabled === true", timeout=10_000)
    page.locator("#empty").click()
    page.wait_for_function(f"{INFO}.includes('No prompt') && !document.querySelector('#tempo input').disabled",
                           timeout=30_000)
    # The accordion mounts its fields as it opens, and a field still mounting can reset a value typed into it:
    # type until the page keeps it.
    for _ in range(30):
        page.locator("#tempo input").fill("999")
        page.locator("#tempo input").press("Tab")
        time.sleep(0.3)
        if page.evaluate("document.querySelector('#tempo input').value") == "999":
            break
    page.locator("#generate").click()
    message = "outside what this tokenizer can write"
    try:
        page.wait_for_function(f"""[...document.querySelectorAll('[data-testid="toast-body"]')]
            .some(e => e.innerText.includes({message!r}))""", timeout=30_000)
    except Exception:  # say what the page shows instead
        shown = page.evaluate("""[...document.querySelectorAll('[data-testid="toast-body"]')].map(e => e.innerText)""")
        pytest.fail(f"no tempo message; toasts: {shown}; status: {page.locator('#status').inner_text()!r}")
    time.sleep(1.0)
    assert _toasts(page, message) == 1
    assert page.locator("#status").inner_text().strip() == ""  # no run started
    assert page.locator("#result-audio-1 audio[src]").count() == 0


@pytest.mark.slow
def test_browser_each_variation_shows_a_seed_that_reproduces_it(page):
    _example(page, "essen_folksong_han1_1")
    _set_slider(page, "variations", 3)
    page.locator("#length input").fill("2")
    _generate(page, 3)
    caption = page.locator("#result-roll-3 .mm-caption").inner_text()
    seed = int(caption.split("seed ")[1].split(":")[0])
    first = page.request.get(page.locator("#result-midi-3 a[data-testid='download-link']").get_attribute("href")).body()
    page.locator("#settings").get_by_text("More settings").click()
    page.locator("#random-seed input").uncheck()
    page.locator("#seed input").fill(str(seed))
    _set_slider(page, "variations", 1)  # variation 3's own seed makes it again, alone
    _generate(page, 1)
    page.wait_for_function(f"document.querySelector('#result-roll-1 .mm-caption').innerText.includes('seed {seed}')")
    again = page.request.get(page.locator("#result-midi-1 a[data-testid='download-link']").get_attribute("href")).body()
    assert again == first and again[:4] == b"MThd"


@pytest.mark.slow
def test_browser_regenerate_these_bars_keep_one_and_undo(page, tmp_path):
    _example(page)
    range_label = "document.querySelector('#prompt-roll .mm-range')?.innerText || ''"
    page.wait_for_function(f"{range_label} === 'bars 4-5'", timeout=30_000)  # the last two bars, shaded
    assert page.locator("#prompt-roll .mm-bar").count() == 5  # numbered
    before = page.locator("#prompt-roll .mm-range").bounding_box()
    for field, value in (("#first-bar", "2"), ("#last-bar", "3")):
        page.locator(f"{field} input").fill(value)
        page.locator(f"{field} input").press("Tab")
    page.wait_for_function(f"{range_label} === 'bars 2-3' && document.querySelector('#prompt-roll .mm-range')"
                           f".getBoundingClientRect().x < {before['x']} - 100", timeout=30_000)  # drawn as typed
    _set_slider(page, "variations", 2)
    started = time.monotonic()
    _watch_status(page)
    page.locator("#regenerate").click()
    page.wait_for_function("window.statuses.some(s => s.startsWith('Regenerating bars 2-3')) && "
                           f"{STATUS}.startsWith('Done: 2 variation(s) of bars 2-3')", timeout=60_000)
    for slot in (1, 2):
        page.wait_for_selector(f"#result-audio-{slot} audio[src]", state="attached", timeout=30_000)
        assert page.locator(f"#result-roll-{slot} .mm-range").inner_text() == "bars 2-3"
        page.locator(f"#result-midi-{slot} a[data-testid='download-link']").wait_for(timeout=30_000)
    TIMINGS["regenerate 2 x (to 'Done')"] = time.monotonic() - started
    page.wait_for_function("document.querySelector('#continue-2').innerText.includes('Keep this one')",
                           timeout=10_000)
    page.screenshot(path=tmp_path / "regenerate.png", full_page=True)
    page.locator("#continue-2").click()  # keep it: the history names the edit ...
    page.wait_for_function(f"{INFO}.includes('bach_bwv66.6_chorale, bars 2-3 regenerated')", timeout=30_000)
    page.wait_for_function(f"{range_label} === 'bars 2-3'", timeout=30_000)  # ... the range stays chosen
    page.locator("#undo").click()  # ... and undo brings the chorale back
    page.wait_for_function(f"{INFO}.includes('84 notes')", timeout=30_000)
    page.wait_for_function(f"{range_label} === 'bars 2-3'", timeout=30_000)  # its roll redrawn with the range
    page.wait_for_function(f"{STATUS}.startsWith('Earlier results of this prompt: 2 variations')",
                           timeout=30_000)  # ... and the variations it had
    assert page.locator("#undo").is_disabled()
    status = page.locator("#status").inner_text()
    page.locator("#last-bar input").fill("9")  # past the piece's end: one message, nothing else changes
    page.locator("#last-bar input").press("Tab")
    page.locator("#regenerate").click()
    page.wait_for_function("""[...document.querySelectorAll('[data-testid="toast-body"]')]
        .some(e => e.innerText.includes('outside the piece: it has bars 1-5'))""", timeout=30_000)
    time.sleep(1.0)
    assert page.locator("#status").inner_text() == status and "84 notes" in page.locator("#prompt-info").inner_text()
    assert page.locator("#result-roll-2 .mm-range").count() == 1 and page.external == []


def test_browser_add_a_bass_heard_with_the_others_and_alone(page, tmp_path):
    """Issue 27 item 2: a bass added over the shaded bar; the card has two players (with the other parts, and
    the new part alone) and the roll's legend names the new part."""
    _example(page)
    range_label = "document.querySelector('#prompt-roll .mm-range')?.innerText || ''"
    page.wait_for_function(f"{range_label} === 'bars 4-5'", timeout=30_000)
    page.locator("#first-bar input").fill("5")  # one bar: quick on the tiny model
    page.locator("#first-bar input").press("Tab")
    page.wait_for_function(f"{range_label} === 'bar 5'", timeout=30_000)
    page.locator("#part-scope").get_by_label("the shaded bars (From bar, To bar)").check()
    assert page.locator("#part-instrument input").input_value() == "bass"
    started = time.monotonic()
    _watch_status(page)
    page.locator("#add-part").click()
    page.wait_for_function("window.statuses.some(s => s.startsWith('Adding bass to bar 5')) && "
                           f"{STATUS}.startsWith('Done: 1 variation(s) of bass added to bar 5')", timeout=90_000)
    page.wait_for_selector("#result-audio-1 audio[src]", state="attached", timeout=30_000)
    page.wait_for_selector("#result-alone-1 audio[src]", state="attached", timeout=30_000)
    TIMINGS["add a part 1 x (to 'Done')"] = time.monotonic() - started
    card = page.locator("#result-audio-1").locator("xpath=..")
    assert card.locator("audio").count() == 2  # two players on the card: with the others, and alone
    assert "with the other parts" in page.locator("#result-audio-1").inner_text()
    assert "the bass alone" in page.locator("#result-alone-1").inner_text()
    legend = page.locator("#result-roll-1 .mm-legend").inner_text()
    assert "Electric Bass (finger) (added)" in legend and "Soprano" in legend
    page.wait_for_function("document.querySelector('#continue-1').innerText.includes('Keep this one')",
                           timeout=10_000)
    page.screenshot(path=tmp_path / "add-part.png", full_page=True)
    assert page.external == []


def _play(page, slot: int | str, seconds: float) -> float:
    """Play result `slot` (or "prompt") with its own play button for about `seconds`, pause it, and say where
    it stopped."""
    box = "#prompt-audio" if slot == "prompt" else f"#result-audio-{slot}"
    audio = f"document.querySelector('{box} audio')"
    page.wait_for_function(f"{audio}.duration > 0", timeout=30_000)
    page.locator(f"{box} audio").scroll_into_view_if_needed()  # the mouse clicks where the page shows it
    player = page.locator(f"{box} audio").bounding_box()
    page.mouse.click(player["x"] + 18, player["y"] + player["height"] / 2)
    page.wait_for_function(f"!{audio}.paused", timeout=10_000)
    # played that far, however slowly a loaded machine starts the audio (a fixed sleep measured the machine)
    page.wait_for_function(f"{audio}.currentTime >= {seconds}", timeout=20_000)
    page.mouse.click(player["x"] + 18, player["y"] + player["height"] / 2)
    page.wait_for_function(f"{audio}.paused", timeout=10_000)
    return page.evaluate(f"{audio}.currentTime")


@pytest.mark.slow
def test_browser_every_new_result_is_ready_at_the_start(page):
    """Issue 30 item 1: a result played to 3 s, then Generate again: the new result's player and playhead are
    at 0:00 (gradio's player kept the old position and put the new audio there)."""
    _example(page, "bach_bwv66.6_chorale")
    assert _play(page, "prompt", 0.6) > 0.2  # the prompt's player too, through 'nothing' to a new prompt
    page.locator("#empty").click()
    page.wait_for_function(f"{INFO}.includes('No prompt')", timeout=30_000)
    _example(page, "essen_folksong_han1_1")
    prompt = "document.querySelector('#prompt-audio audio')"
    page.wait_for_function(f"{prompt}.duration > 0", timeout=30_000)
    time.sleep(0.5)
    assert page.evaluate(f"{prompt}.currentTime") == 0
    _set_slider(page, "variations", 2)
    page.locator("#length input").fill("4")
    _generate(page, 2)
    assert _play(page, 2, 1.2) > 0.5
    played = _play(page, 1, 0.8)
    assert played > 0.3
    old = page.evaluate("document.querySelector('#result-audio-1 audio').src")
    _generate(page, 2)
    for slot in (1, 2):
        audio = f"document.querySelector('#result-audio-{slot} audio')"
        page.wait_for_function(f"{audio}.duration > 0 && {audio}.src !== {old!r}", timeout=30_000)
        time.sleep(0.5)  # a late seek would land by now
        assert page.evaluate(f"{audio}.currentTime") == 0
        assert _playhead(page, slot)[1] == "none"  # nothing drawn before Play
    short = page.evaluate("+document.querySelector('#result-roll-1 .mm-roll').dataset.end")
    assert _play(page, 1, 0.6) > 0.2
    page.locator("#full-view input").check()  # a new audio for the same result: at 0:00 too
    page.wait_for_function(f"+document.querySelector('#result-roll-1 .mm-roll').dataset.end > {short} + 1 && "
                           f"document.querySelector('#result-audio-1 audio').duration > {short} + 1", timeout=30_000)
    time.sleep(0.5)
    assert page.evaluate("document.querySelector('#result-audio-1 audio').currentTime") == 0
    assert _playhead(page, 1)[1] == "none"


@pytest.mark.slow
def test_browser_a_new_prompt_clears_what_the_last_one_left_and_undo_brings_it_back(page):
    """Issue 30 item 3: the bar range, the example menu and the results stayed with the next prompt."""
    range_label = "document.querySelector('#prompt-roll .mm-range')?.innerText || ''"
    fields = "[document.querySelector('#first-bar input').value, document.querySelector('#last-bar input').value]"
    menu = "document.querySelector('#example input').value"
    _example(page)
    page.wait_for_function(f"{range_label} === 'bars 4-5'", timeout=30_000)
    for field, value in (("#first-bar", "2"), ("#last-bar", "3")):
        page.locator(f"{field} input").fill(value)
        page.locator(f"{field} input").press("Tab")
    page.wait_for_function(f"{range_label} === 'bars 2-3'", timeout=30_000)
    page.locator("#length input").fill("2")
    _generate(page, 1)
    _example(page, "beethoven_op18no1_quartet")  # 8 bars: its own last two, whatever was typed before
    page.wait_for_function(f"{range_label} === 'bars 7-8'", timeout=30_000)
    assert page.evaluate(fields) == ["7", "8"] and page.evaluate(menu) == "beethoven_op18no1_quartet"
    page.wait_for_function("!document.querySelector('#result-audio-1 audio[src]')", timeout=30_000)
    assert page.locator("#status").inner_text().strip() == ""  # the chorale's results went with it
    assert page.locator("#result-roll-1 .mm-roll").count() == 0
    page.locator("#empty").click()  # nothing: no range, no example named
    page.wait_for_function(f"{INFO}.includes('No prompt')", timeout=30_000)
    page.wait_for_function(f"{fields}.join() === ',' && {menu} === ''", timeout=30_000)
    page.locator("#undo").click()
    page.wait_for_function(f"{INFO}.includes('beethoven') && {menu} === 'beethoven_op18no1_quartet'",
                           timeout=30_000)
    page.locator("#undo").click()  # undo brings the chorale back, named in the menu, with its results
    page.wait_for_function(f"{INFO}.includes('84 notes') && {menu} === 'bach_bwv66.6_chorale'", timeout=30_000)
    page.wait_for_function(f"{STATUS}.startsWith('Earlier results of this prompt: 1 variation')", timeout=30_000)
    page.wait_for_selector("#result-audio-1 audio[src]", state="attached", timeout=30_000)
    assert page.locator("#result-roll-1 .mm-roll img").count() == 1
    page.wait_for_function(f"{range_label} === 'bars 4-5'", timeout=30_000)


@pytest.mark.slow
def test_browser_an_empty_page_offers_only_what_it_can_do(page, monkeypatch):
    """Issue 30 item 4: on an empty page Regenerate, Continue and Stop were active and the bar fields read 0
    to 0. Now: Regenerate with a prompt, Stop while something runs, Continue under a result."""
    fields = "[document.querySelector('#first-bar input').value, document.querySelector('#last-bar input').value]"
    page.wait_for_selector("#last-bar input", state="attached", timeout=10_000)  # the page may still be drawing
    page.wait_for_function(f"{fields}.join() === ','", timeout=10_000)
    for button in ("#regenerate", "#stop", "#continue-1"):
        assert page.locator(button).is_disabled(), button
    _example(page)
    page.wait_for_function(f"!document.querySelector('#regenerate').disabled && {fields}.join() === '4,5'",
                           timeout=30_000)
    assert page.locator("#stop").is_disabled()
    slow_down_generation(monkeypatch, 0.02)
    page.locator("#length input").fill("2")
    page.locator("#generate").click()
    page.wait_for_function(f"{STATUS}.startsWith('Generating')", timeout=30_000)
    page.wait_for_function("!document.querySelector('#stop').disabled", timeout=10_000)  # something to stop
    assert page.locator("#continue-1").is_disabled()
    page.wait_for_function(f"{STATUS}.startsWith('Done')", timeout=60_000)
    page.wait_for_function("document.querySelector('#stop').disabled && "
                           "!document.querySelector('#continue-1').disabled", timeout=10_000)
    # the players' downloads are named after the piece and variation, not "audio.wav"
    for box, name in (("#prompt-audio", "bach_bwv66.6_chorale.wav"),
                      ("#result-audio-1", "bach_bwv66.6_chorale-variation-1-excerpt.wav")):
        link = page.locator(f"{box} a[download]")
        link.wait_for(state="attached", timeout=10_000)
        assert link.get_attribute("download") == name
    page.locator("#empty").click()  # nothing: no range, nothing to regenerate, no result to continue
    page.wait_for_function(f"{INFO}.includes('No prompt') && document.querySelector('#regenerate').disabled && "
                           "document.querySelector('#continue-1').disabled", timeout=30_000)


@pytest.mark.slow
def test_browser_phone_width(server, tmp_path):
    _skip_without_browser()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright missing: pip install playwright")
    with sync_api.sync_playwright() as playwright:
        browser = _browser(playwright)
        page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
        page.goto(server)
        page.wait_for_selector("#generate")
        assert page.locator("#result-midi-1").bounding_box() is None  # an empty MIDI box takes no room
        _example(page)
        page.wait_for_function("document.querySelectorAll('#prompt-roll .mm-bar').length >= 5", timeout=30_000)
        # the bar range under the roll it is drawn on
        assert page.locator("#bar-range").bounding_box()["y"] > page.locator("#prompt-roll img").bounding_box()["y"]
        page.locator("#length input").fill("16")  # 20 bars in the whole view: their numbers would run together
        _generate(page, 1)
        page.locator("#full-view input").check()
        page.wait_for_function("document.querySelectorAll('#result-roll-1 .mm-bar').length >= 12", timeout=60_000)
        time.sleep(1.0)
        for roll in ("#prompt-roll", "#result-roll-1"):
            boxes = page.evaluate(f"""[...document.querySelectorAll('{roll} .mm-bar')]
                .filter(e => getComputedStyle(e).visibility !== 'hidden')
                .map(e => {{ const r = e.getBoundingClientRect(); return [r.left, r.right]; }})""")
            assert len(boxes) >= 2 and all(b[0] >= a[1] for a, b in zip(boxes, boxes[1:])), (roll, boxes)
            legend = page.locator(f"{roll} .mm-legend").first
            assert legend.is_visible() and float(legend.evaluate("e => getComputedStyle(e).fontSize")[:-2]) >= 12
        shown = page.evaluate("[...document.querySelectorAll('#result-roll-1 .mm-bar')].filter(e => "
                              "getComputedStyle(e).visibility !== 'hidden').length")
        assert shown < page.locator("#result-roll-1 .mm-bar").count()  # thinned, not all written on top of each other
        page.screenshot(path=tmp_path / "phone.png", full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone
        generate = page.locator("#generate").bounding_box()
        result = page.locator("#result-audio-1").bounding_box()
        settings = page.locator("#settings").bounding_box()
        assert generate["y"] < result["y"] < settings["y"]  # prompt, Generate, result, then settings (closed)
        assert settings["height"] < 100
        browser.close()
    assert (tmp_path / "phone.png").stat().st_size > 10_000


def test_zz_print_browser_timings():
    print("\nbrowser timings (s):", {k: round(v, 2) for k, v in TIMINGS.items()})
