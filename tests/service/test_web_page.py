"""``GET /`` played end to end in headless Chromium (Debian's ``chromium``, driven by Playwright) against
a real uvicorn server on a loopback port: type text, pick voice, speed, pitch and model, click Speak, the
<audio> element gets the audio, the page shows time to first audio and RTF, and the download link
gives the same WAV. Skipped only where no browser is installed (``./run.sh test`` installs one).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fake_engine import RATE, FakeEngine, LiveServer, expected_audio, expected_words, make_settings

from service.app import create_app
from service.types import VoiceInfo

CHROMIUM = os.environ.get("PARAWAVE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip(
        "no Chromium installed (apt-get install chromium; ./run.sh test does)", allow_module_level=True
    )

from playwright.sync_api import sync_playwright  # noqa: E402  (dev extra; drives the system Chromium)

VOICES = Path(__file__).resolve().parents[1] / "fixtures" / "voices"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # tests run as root in containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--mute-audio",
]
STATS = re.compile(r"time to first audio (\d+) ms · ([\d.]+) s of audio in ([\d.]+) s · RTF ([\d.]+)")
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium for the module, with a fresh profile (Playwright's own browsers are
    never downloaded: the system one is used)."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            accept_downloads=True,
            viewport={"width": 900, "height": 760},
        )
        context.set_default_timeout(TIMEOUT_MS)
        yield context
        context.close()


@pytest.fixture
def open_page(browser):
    """open_page(server) -> the page at GET /, with its console errors and requests recorded."""
    pages = []

    def make(server: LiveServer):
        page = browser.new_page()
        page.errors = []  # console errors and uncaught exceptions
        page.foreign = []  # requests that leave the server (the page must be self-contained)
        page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.on("response", lambda r: r.status >= 400 and page.errors.append(f"{r.status} {r.url}"))
        page.on(
            "request",
            lambda r: r.url.startswith((server.url, "blob:", "data:")) or page.foreign.append(r.url),
        )
        page.goto(f"{server.url}/")
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.close()


def speak(page, text: str, voice: str, speed: float, model: str, pitch: float = 0.0) -> dict:
    """Fill in the form as a user would, click Speak, wait for the audio element to have data."""
    page.wait_for_function("document.querySelectorAll('#voice option').length > 0")
    page.fill("#text", text)
    page.select_option("#voice", voice)
    page.fill("#speed", str(speed))
    page.fill("#pitch", str(pitch))
    page.check(f"input[name=model][value={model}]")
    page.click("#speak")
    page.wait_for_function("['done', 'error'].includes(document.body.dataset.state)")
    assert page.get_attribute("body", "data-state") == "done", page.inner_text("#error")
    # the player got the whole utterance: metadata and data for the current position at least
    player = page.evaluate(
        """() => new Promise((resolve, reject) => {
            const a = document.getElementById('player');
            const done = () => resolve({readyState: a.readyState, duration: a.duration, src: a.src});
            if (a.readyState >= 2) done();
            else { a.addEventListener('canplay', done, {once: true});
                   a.addEventListener('error', () => reject(new Error('audio error ' + a.error.code)), {once: true}); }
        })"""
    )
    assert player["readyState"] >= 2 and player["duration"] > 0, player
    assert player["src"].startswith("blob:")
    stats = STATS.search(page.inner_text("#stats"))
    assert stats, page.inner_text("#stats")
    first_ms, seconds, elapsed, rtf = int(stats[1]), float(stats[2]), float(stats[3]), float(stats[4])
    assert 0 <= first_ms <= (elapsed + 0.005) * 1000 + 1  # elapsed is shown rounded to 0.01 s
    assert seconds > 0 and rtf > 0
    # RTF = elapsed / seconds, before each was rounded to 0.01 s for display
    assert (
        (elapsed - 0.005) / (seconds + 0.005) - 0.0005
        <= rtf
        <= (elapsed + 0.005) / (seconds - 0.005) + 0.0005
    )
    assert player["duration"] == pytest.approx(seconds, abs=0.01)
    return {"player": player, "first_ms": first_ms, "seconds": seconds, "rtf": rtf}


def download(page, tmp_path: Path) -> tuple[np.ndarray, int]:
    link = page.locator("#download")
    assert link.is_visible() and link.get_attribute("href").startswith("blob:")
    with page.expect_download() as info:
        link.click()
    assert info.value.suggested_filename == "parawave.wav"
    path = tmp_path / "download.wav"
    info.value.save_as(path)
    audio, rate = sf.read(path, dtype="float32")
    return audio, rate


@pytest.mark.parametrize("model", ["student", "teacher"])
def test_page_speaks_with_the_fake_engine(open_page, tmp_path, model):
    engine = FakeEngine()
    server = LiveServer(create_app(make_settings(), engine=engine)).start()
    try:
        page = open_page(server)
        assert page.title() == "parawave"
        # the list is filled by a fetch after load, all options in one task: wait for it, then read
        page.wait_for_function("document.querySelectorAll('#voice option').length > 0")
        voices = page.eval_on_selector_all("#voice option", "os => os.map(o => o.value)")
        assert voices == ["alpha", "beta", "gamma"]
        assert page.input_value("#voice") == "alpha"  # the server's default is preselected
        text = "Hello from the browser. Two sentences, streamed!"
        result = speak(page, text, voice="beta", speed=1.5, model=model, pitch=-2.5)
        call = engine.calls[-1]
        assert (call.text, call.voice, call.speaker, call.speed, call.model, call.pitch) == (
            text,
            "fake",
            "beta",
            1.5,
            model,
            -2.5,
        )
        expected = expected_audio(text, RATE, speed=1.5, pitch=-2.5)
        assert result["seconds"] == pytest.approx(len(expected) / RATE, abs=0.006)
        audio, rate = download(page, tmp_path)
        assert rate == RATE
        np.testing.assert_allclose(audio, expected, atol=1e-4)  # the page reassembled every chunk in order
        if model == "student":
            page.screenshot(path=tmp_path / "page.png", full_page=True)
            assert (tmp_path / "page.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (page.errors, page.foreign) == ([], [])
    finally:
        server.stop()


def test_page_shows_the_server_error(open_page):
    server = LiveServer(create_app(make_settings(max_input_chars=20), engine=FakeEngine())).start()
    try:
        page = open_page(server)
        page.wait_for_function("document.querySelectorAll('#voice option').length > 0")
        page.fill("#text", "This text is longer than the twenty characters allowed.")
        page.click("#speak")
        page.wait_for_function("document.body.dataset.state === 'error'")
        assert "at most 20" in page.inner_text("#error")
        assert page.is_enabled("#speak") and page.is_hidden("#download")
    finally:
        server.stop()


def test_page_speaks_with_the_onnx_engine(open_page, tmp_path):
    # the real ONNX Runtime engine on the tiny fixture bundle (random weights: noise, but real audio)
    server = LiveServer(create_app(make_settings(voices_dir=VOICES, device="cpu"))).start()
    try:
        page = open_page(server)
        result = speak(page, "Hello there. How are you?", voice="beta", speed=1.0, model="student")
        audio, rate = download(page, tmp_path)
        assert rate == 16000
        assert len(audio) == pytest.approx(result["seconds"] * rate, abs=0.005 * rate)  # shown as 0.00 s
        assert len(audio) % 200 == 0 and np.abs(audio).max() > 0  # whole mel frames of sound
        words = caption(page)  # the real engine's word timings, on the typed words
        assert [w[0] for w in words] == ["Hello", "there", "How", "are", "you"]
        assert all(0 <= a <= b <= result["seconds"] + 0.01 for _, a, b in words)
        assert (page.errors, page.foreign) == ([], [])
    finally:
        server.stop()


def caption(page) -> list[tuple[str, float, float]]:
    return page.eval_on_selector_all(
        "#caption .w", "ss => ss.map(s => [s.textContent, +s.dataset.start, +s.dataset.end])"
    )


def seek(page, seconds: float) -> str:
    """Move the player to ``seconds``; the index of the highlighted word once the page has caught up."""
    page.evaluate(
        "t => { document.body.dataset.word = 'seeking'; document.getElementById('player').currentTime = t; }",
        seconds,
    )
    page.wait_for_function("document.body.dataset.word !== 'seeking'")
    return page.get_attribute("body", "data-word")


@pytest.mark.parametrize("model", ["student", "teacher"])
def test_page_highlights_the_word_being_spoken(open_page, model):
    engine = FakeEngine()
    server = LiveServer(create_app(make_settings(), engine=engine)).start()
    try:
        page = open_page(server)
        text = "Words light up as they are spoken. Then the next sentence follows!"
        speak(page, text, voice="alpha", speed=0.5, model=model)
        assert engine.calls[-1].timestamps  # the page asks for the timings (SSE timestamp events)
        want = expected_words(text, speed=0.5)
        got = caption(page)
        assert [g[0] for g in got] == [w.word for w in want]  # the typed text, word by word
        assert [(g[1], g[2]) for g in got] == [(round(w.start, 3), round(w.end, 3)) for w in want]
        assert page.inner_text("#caption") == text
        # while the streamed audio plays, the highlight moves along with it (the page's own clock)
        page.wait_for_function("+document.body.dataset.word >= 0", timeout=TIMEOUT_MS)
        # the player: the word under its position is highlighted, none in the pause between words
        for k in (0, 3, len(want) - 1):
            assert seek(page, (want[k].start + want[k].end) / 2) == str(k)
            assert page.inner_text("#caption .w.now") == want[k].word
        assert seek(page, (want[2].end + want[3].start) / 2) == "-1"
        assert page.locator("#caption .w.now").count() == 0
        assert (page.errors, page.foreign) == ([], [])
    finally:
        server.stop()


def test_page_speaks_a_voice_blend(open_page):
    """The blend box takes a mix of the bundle's speakers; the server's example is its placeholder; the
    request carries the blend; a bad mix shows the server's 400. A voice that cannot blend disables it."""
    engine = FakeEngine([VoiceInfo("fake", RATE, ("alpha", "beta"), blendable=True)])
    server = LiveServer(create_app(make_settings(), engine=engine)).start()
    try:
        page = open_page(server)
        page.wait_for_function("document.querySelectorAll('#voice option').length > 0")
        assert page.get_attribute("#blend", "placeholder") == "beta(2)+alpha(1)"
        assert not page.is_disabled("#blend")
        page.fill("#blend", "alpha(1)+beta(3)")
        speak(page, "Hello there.", voice="alpha", speed=1.0, model="student")
        assert engine.calls[-1].blend == (("alpha", 1.0), ("beta", 3.0))
        page.fill("#blend", "")
        speak(page, "Hello there.", voice="beta", speed=1.0, model="student")
        assert engine.calls[-1].blend is None and engine.calls[-1].speaker == "beta"
        assert (page.errors, page.foreign) == ([], [])
        page.fill("#blend", "alpha(1)+nobody(1)")
        page.click("#speak")
        page.wait_for_function("['done', 'error'].includes(document.body.dataset.state)")
        assert "unknown voice 'nobody' in the blend" in page.inner_text("#error")
    finally:
        server.stop()
    server = LiveServer(create_app(make_settings(), engine=FakeEngine())).start()  # not blendable
    try:
        page = open_page(server)
        page.wait_for_function("document.querySelectorAll('#voice option').length > 0")
        assert page.is_disabled("#blend")
    finally:
        server.stop()
