"""Regenerate the README's screenshot (docs/app.png) from the shipped model on a bundled prompt.

Serves the app in this process on a free localhost port, drives it with Playwright and Debian's Chromium
(never `playwright install`), picks an example, asks for 2 variations of 4 bars with a fixed seed, plays
the first one for a moment so the playhead shows, and saves the page shrunk and palette-reduced:

    python benchmarks/screenshot.py                       # docs/app.png, shipped checkpoint
    python benchmarks/screenshot.py --checkpoint runs/mine/model --out /tmp/app.png
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(checkpoint: str | None) -> tuple[object, str]:
    from musicmha.app import add_arguments
    from musicmha.app.server import prepare

    port = free_port()
    argv = ["--port", str(port)] + (["--checkpoint", checkpoint] if checkpoint else [])
    app, kwargs = prepare(add_arguments(argparse.ArgumentParser()).parse_args(argv))
    app.launch(prevent_thread_lock=True, quiet=True, **kwargs)
    return app, f"http://127.0.0.1:{port}/"


def capture(url: str, raw: Path, example: str, seed: int, variations: int, bars: int) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    timings = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        started = time.monotonic()
        page.goto(url)
        page.wait_for_selector("#generate")
        timings["page ready"] = time.monotonic() - started
        page.locator("#example input").click()
        page.get_by_role("option", name=example).click()
        page.wait_for_selector("#prompt-audio audio[src]", state="attached", timeout=60_000)
        field = page.locator("#variations input[type=number]")
        field.fill(str(variations))
        field.press("Enter")
        page.locator("#length input").fill(str(bars))
        settings = page.locator("#settings").get_by_text("More settings")
        settings.click()  # a fixed seed, so the picture only changes when the model or the app does
        page.locator("#random-seed input").uncheck()
        page.locator("#seed input").fill(str(seed))
        settings.click()
        started = time.monotonic()
        page.locator("#generate").click()
        page.wait_for_function("document.querySelector('#status').innerText.startsWith('Done')", timeout=300_000)
        for slot in range(1, variations + 1):
            page.wait_for_selector(f"#result-audio-{slot} audio[src]", state="attached", timeout=60_000)
        timings[f"{variations} x {bars} bars"] = time.monotonic() - started
        player = page.locator("#result-audio-1 audio").bounding_box()
        page.mouse.click(player["x"] + 18, player["y"] + player["height"] / 2)  # play ...
        time.sleep(4.0)
        page.mouse.click(player["x"] + 18, player["y"] + player["height"] / 2)  # ... and pause: the playhead stays
        page.mouse.move(0, 0)
        page.screenshot(path=raw, full_page=True)
        browser.close()
    return timings


def shrink(raw: Path, out: Path, limit: int = 300_000) -> None:
    from PIL import Image

    image = Image.open(raw).convert("RGB")
    image = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.LANCZOS)
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    if out.stat().st_size > limit:
        raise SystemExit(f"{out}: {out.stat().st_size:,} bytes, over the {limit:,}-byte budget")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "app.png")
    parser.add_argument("--checkpoint", default=None, help="model folder (default: the shipped one)")
    parser.add_argument("--example", default="bach_bwv66.6_chorale", help="bundled prompt (data/prompts/)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--variations", type=int, default=2)
    parser.add_argument("--bars", type=int, default=4)
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"screenshot: {CHROMIUM} missing: apt-get install -y chromium", file=sys.stderr)
        return 2
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.chdir(ROOT)  # the app serves files from its own folders
    app, url = serve(args.checkpoint)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "page.png"
            timings = capture(url, raw, args.example, args.seed, args.variations, args.bars)
            shrink(raw, args.out)
    finally:
        app.close()
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes); browser timings (s): "
          + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
