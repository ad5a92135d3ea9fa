"""Issue 42's "Must show": hard inputs, SSML breaks and rates, voice blends, through the real server.

    python -m evaluation.say_it_right --voices-dir voices --out recipes/reports/say-it-right

The service runs in-process (FastAPI TestClient over the ONNX engine, CPU) with a pronunciation lexicon
written next to the report; every case is a ``POST /v1/audio/speech`` (wav, speaker rms unless said,
seed 1). Writes ``cases.md`` (each input, the phonemes the engine encodes, what pocketsphinx hears and
its word error rate against what should be said), ``timing.md`` (break pauses and rate durations
measured on the audio), ``blends.md`` (Praat F0 medians of speakers and their mixes) and ``rejects.md``
(the 400s for entity expansion, oversized and malformed SSML).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

LEXICON = """# say-it-right report lexicon (model/text/lexicon.py format)
Kokoro\t/kˈOkəɹO/
nginx\tengine x
SQL\tsequel
Nguyen\t/wˈɪn/
"""


@dataclass(frozen=True)
class Case:
    id: str
    kind: str
    input: str
    says: str  # what should be heard (pocketsphinx reference; its words)
    extra: tuple[tuple[str, object], ...] = ()
    voice: str = "rms"


CASES = [
    Case(
        "title",
        "abbreviation",
        "Dr. Smith lives on Elm St. near the bank.",
        "doctor smith lives on elm street near the bank",
    ),
    Case(
        "titles2",
        "abbreviation",
        "Mr. Jones met Mrs. Brown and Prof. Green.",
        "mister jones met missus brown and professor green",
    ),
    Case(
        "acronym",
        "acronym",
        "The FBI and the CIA wrote to the BBC.",
        "the f b i and the c i a wrote to the b b c",
    ),
    Case("acronym-word", "acronym", "NASA launched a rocket.", "nasa launched a rocket"),
    Case(
        "money",
        "number",
        "It costs $19.99, about 20% more.",
        "it costs nineteen dollars and ninety nine cents about twenty percent more",
    ),
    Case(
        "time-date",
        "number",
        "Meet me at 3:30 PM on Jan. 5th, 2024.",
        "meet me at three thirty p m on january fifth twenty twenty four",
    ),
    Case(
        "ordinal",
        "number",
        "The 21st century began in 2001.",
        "the twenty first century began in two thousand one",
    ),
    Case(
        "phone",
        "number",
        "Call 555-123-4567 now.",
        "call five five five one two three four five six seven now",
    ),
    Case(
        "units",
        "number",
        "It weighs 5 kg and is 3.5 km away.",
        "it weighs five kilograms and is three point five kilometers away",
    ),
    Case(
        "url",
        "number",
        "Visit www.example.com/docs today.",
        "visit w w w dot example dot com slash docs today",
    ),
    Case("email", "number", "Write to info@example.com please.", "write to info at example dot com please"),
    Case("roman", "name", "King George III died in 1820.", "king george the third died in eighteen twenty"),
    Case("names", "name", "Siobhan met Nguyen in Worcester.", "siobhan met win in worcester"),
    Case("lexicon", "lexicon", "Kokoro runs behind nginx.", "kokoro runs behind engine x"),
    Case("lexicon-case", "lexicon", "Write SQL, not sql.", "write sequel not s q l"),
    Case(
        "inline-ipa",
        "inline IPA",
        "I say [tomato](/təmˈɑːtoʊ/), you say tomato.",
        "i say tomato you say tomato",
    ),
    Case("inline-kokoro", "inline IPA", "[Kokoro](/kˈOkəɹO/) is a voice.", "kokoro is a voice"),
    Case(
        "norm-off",
        "normalization off",
        "Dr. Smith paid $5.",
        "doctor smith paid dollar five",
        (("normalization_options", {"normalize": False}),),
    ),
    Case(
        "units-off",
        "normalization switch",
        "It is 5 km away.",
        "it is five k m away",
        (("normalization_options", {"unit_normalization": False}),),
    ),
    Case(
        "ssml-break",
        "SSML break",
        '<speak>One moment. <break time="1s"/>Thank you.</speak>',
        "one moment thank you",
    ),
    Case(
        "ssml-slow",
        "SSML prosody",
        '<speak><prosody rate="slow">This is spoken slowly.</prosody></speak>',
        "this is spoken slowly",
    ),
    Case(
        "ssml-fast-high",
        "SSML prosody",
        '<speak><prosody rate="fast" pitch="+4st">This is fast and high.</prosody></speak>',
        "this is fast and high",
    ),
    Case(
        "ssml-spell",
        "SSML say-as",
        '<speak>Spell <say-as interpret-as="characters">ABC</say-as>.</speak>',
        "spell a b c",
    ),
    Case(
        "ssml-date",
        "SSML say-as",
        '<speak>Due <say-as interpret-as="date" format="mdy">12/25/2024</say-as>.</speak>',
        "due december twenty fifth twenty twenty four",
    ),
    Case(
        "ssml-ordinal",
        "SSML say-as",
        '<speak>The <say-as interpret-as="ordinal">3</say-as> door.</speak>',
        "the third door",
    ),
    Case(
        "ssml-cardinal",
        "SSML say-as",
        '<speak>Room <say-as interpret-as="cardinal">1,204</say-as>.</speak>',
        "room one thousand two hundred four",
    ),
    Case(
        "ssml-phone",
        "SSML say-as",
        '<speak>Dial <say-as interpret-as="telephone">+1 555 0100</say-as>.</speak>',
        "dial plus one five five five zero one zero zero",
    ),
    Case(
        "ssml-sub",
        "SSML sub",
        '<speak>The <sub alias="World Wide Web">WWW</sub> is big.</speak>',
        "the world wide web is big",
    ),
    Case(
        "ssml-phoneme",
        "SSML phoneme",
        '<speak>A <phoneme alphabet="ipa" ph="pɪˈkɑːn">pecan</phoneme> pie.</speak>',
        "a pecan pie",
    ),
    Case("ssml-entity", "SSML", "<speak>Tom &amp; Jerry.</speak>", "tom and jerry"),
]


def _client(voices_dir: Path, lexicon: Path):
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    settings = Settings(
        _env_file=None, voices_dir=voices_dir, device="cpu", lexicon=lexicon, max_batch_delay_ms=1.0
    )
    client = TestClient(create_app(settings), raise_server_exceptions=False)
    client.__enter__()
    deadline = time.monotonic() + 300
    while client.get("/health/ready").status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not get ready")
        time.sleep(0.2)
    return client


def _speak(client, text: str, voice: str = "rms", **extra) -> tuple[np.ndarray, int, dict]:
    import soundfile as sf

    body = {"input": text, "voice": voice, "response_format": "wav", "seed": 1, **extra}
    r = client.post("/v1/audio/speech", json=body)
    if r.status_code != 200:
        raise RuntimeError(f"{text!r}: {r.status_code} {r.text}")
    audio, rate = sf.read(io.BytesIO(r.content), dtype="float32")
    return audio, rate, dict(r.headers)


def _phonemes(text: str, lexicon_text: str, options: dict | None) -> str:
    from model.text import default_symbols
    from model.text.lexicon import parse_lexicon
    from model.text.markup import plan, spoken
    from model.text.normalize import NormalizationOptions

    table = default_symbols()
    said = spoken(
        plan(text), table, parse_lexicon(lexicon_text, table), NormalizationOptions(**(options or {}))
    )
    return " // ".join(s.phonemes for s in said)  # sentences


def _silences(audio: np.ndarray, rate: int, floor_db: float = -45.0, frame_s: float = 0.01) -> list[float]:
    """Lengths (s) of the silent runs strictly inside the audio (10 ms frames whose RMS is below
    ``floor_db`` re the loudest frame)."""
    n = int(rate * frame_s)
    frames = audio[: len(audio) // n * n].reshape(-1, n)  # (F, n)
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)) + 1e-12
    quiet = 20 * np.log10(rms / rms.max()) < floor_db
    runs, start = [], None
    for i, q in enumerate(quiet):
        if q and start is None:
            start = i
        elif not q and start is not None:
            if start > 0:
                runs.append((i - start) * frame_s)
            start = None
    return runs  # a trailing run (to the end) is left out


def _speech_span(audio: np.ndarray, rate: int, floor_db: float = -45.0) -> float:
    """Seconds from the first to the last non-silent 10 ms frame."""
    n = int(rate * 0.01)
    frames = audio[: len(audio) // n * n].reshape(-1, n)
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)) + 1e-12
    loud = np.flatnonzero(20 * np.log10(rms / rms.max()) >= floor_db)
    return (loud[-1] - loud[0] + 1) * 0.01 if loud.size else 0.0


def _f0_median(audio: np.ndarray, rate: int) -> float:
    import parselmouth

    pitch = parselmouth.Sound(audio.astype(np.float64), sampling_frequency=rate).to_pitch_ac(
        pitch_floor=60.0, pitch_ceiling=400.0
    )
    f0 = pitch.selected_array["frequency"]
    return float(np.median(f0[f0 > 0]))


def cases_table(client, lexicon_text: str) -> tuple[list[str], dict]:
    from jiwer import process_words

    from evaluation.metrics import transcribe, words

    rows = [
        "| # | kind | input (request) | phonemes encoded (model.text.markup; // between sentences) "
        "| without the lexicon / markup / option | pocketsphinx hears | should say | WER |",
        "|---|---|---|---|---|---|---|---:|",
    ]
    errors = total = 0
    for n, c in enumerate(CASES, 1):
        extra = dict(c.extra)
        audio, rate, _ = _speak(client, c.input, c.voice, **extra)
        heard = transcribe(audio, rate)
        ref, hyp = words(c.says), words(heard)
        out = process_words(ref, hyp)
        e = out.substitutions + out.deletions + out.insertions
        errors, total = errors + e, total + len(ref.split())
        phon = _phonemes(c.input, lexicon_text, extra.get("normalization_options"))
        base = "-"
        if c.kind in ("lexicon", "inline IPA", "normalization off", "normalization switch"):
            plain = re.sub(r"\[([^\]]*)\]\(/[^/]*/\)", r"\1", c.input)
            base = _phonemes(plain, "", None)
        shown = c.input.replace("|", "\\|") + (f" `{json.dumps(extra, ensure_ascii=False)}`" if extra else "")
        rows.append(
            f"| {n} | {c.kind} | `{shown}` | {phon} | {base} | {heard or '(nothing)'} | {c.says} | {e / max(1, len(ref.split())):.2f} |"
        )
        log.info("%s: %s", c.id, heard)
    return rows, {"cases": len(CASES), "pooled_wer": errors / max(1, total)}


def timing_tables(client) -> tuple[list[str], dict]:
    sentence = "The quick brown fox jumps over the lazy dog."
    lines = [
        "## Breaks",
        "",
        "| asked | silent gap, with break (s) | silent gap, no break (s) | added (s) | error |",
        "|---:|---:|---:|---:|---:|",
    ]
    plain, rate, _ = _speak(client, f"<speak>{sentence} {sentence}</speak>")
    base = max(_silences(plain, rate), default=0.0)
    worst = 0.0
    for asked in (0.25, 0.5, 1.0, 2.0):
        audio, rate, _ = _speak(
            client, f'<speak>{sentence} <break time="{asked * 1000:g}ms"/>{sentence}</speak>'
        )
        gap = max(_silences(audio, rate), default=0.0)
        added = gap - base
        err = abs(added - asked) / asked
        worst = max(worst, err)
        lines.append(f"| {asked:g} s | {gap:.2f} | {base:.2f} | {added:.2f} | {100 * err:.1f} % |")
    lines += [
        "",
        "## Rates",
        "",
        "| rate | asked duration ratio | speech span (s) | measured ratio | error |",
        "|---|---:|---:|---:|---:|",
    ]
    normal, rate, _ = _speak(client, sentence)
    span0 = _speech_span(normal, rate)
    lines.append(f"| (none) | 1 | {span0:.2f} | 1 | - |")
    worst_rate = 0.0
    for label, factor in (
        ("x-slow", 0.5),
        ("slow", 0.75),
        ("50%", 0.5),
        ("fast", 1.3),
        ("x-fast", 1.75),
        ("+100%", 2.0),
    ):
        audio, rate, _ = _speak(client, f'<speak><prosody rate="{label}">{sentence}</prosody></speak>')
        span = _speech_span(audio, rate)
        ratio, want = span / span0, 1.0 / factor
        err = abs(ratio - want) / want
        worst_rate = max(worst_rate, err)
        lines.append(f"| {label} ({factor:g}x) | {want:.3f} | {span:.2f} | {ratio:.3f} | {100 * err:.1f} % |")
    lines += [
        "",
        "## Pitch",
        "",
        "| prosody pitch | F0 median (Hz, Praat) | ratio | asked |",
        "|---|---:|---:|---:|",
    ]
    f00 = _f0_median(normal, rate)
    lines.append(f"| (none) | {f00:.1f} | 1 | 1 |")
    for st in (-4, 4):
        audio, rate, _ = _speak(client, f'<speak><prosody pitch="{st:+d}st">{sentence}</prosody></speak>')
        f0 = _f0_median(audio, rate)
        lines.append(f"| {st:+d}st | {f0:.1f} | {f0 / f00:.3f} | {2 ** (st / 12):.3f} |")
    return lines, {"break_worst_error": worst, "rate_worst_error": worst_rate}


def blend_table(client) -> tuple[list[str], dict]:
    texts = [
        "The quick brown fox jumps over the lazy dog.",
        "She sells sea shells by the sea shore.",
        "A large fawn jumped quickly over white zinc boxes.",
    ]
    rows = ["| voice | F0 median per sentence (Hz, Praat) | mean |", "|---|---|---:|"]
    means = {}
    for voice in ("slt", "slt(3)+rms(1)", "slt(1)+rms(1)", "slt(1)+rms(3)", "rms", "slt(1)+awb(1)", "awb"):
        meds = []
        for t in texts:
            audio, rate, _ = _speak(client, t, voice)
            meds.append(_f0_median(audio, rate))
        means[voice] = float(np.mean(meds))
        rows.append(f"| {voice} | {', '.join(f'{m:.1f}' for m in meds)} | {means[voice]:.1f} |")
    a, b = _speak(client, texts[0], "slt(1)+rms(1)")[0], _speak(client, texts[0], "slt(1)+rms(1)")[0]
    return rows, {"means": means, "same_seed_same_audio": bool(np.array_equal(a, b))}


def rejects_table(client) -> list[str]:
    cases = {
        "billion laughs (entity expansion)": '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><speak>&lol3;</speak>',
        "external entity (file read)": '<!DOCTYPE speak [<!ENTITY x SYSTEM "file:///etc/passwd">]><speak>&x;</speak>',
        "oversized SSML (5,000 characters)": "<speak>" + "<s>word</s>" * 454 + "</speak>",
        "nesting 40 deep": "<speak>" + "<prosody>" * 40 + "x" + "</prosody>" * 40 + "</speak>",
        "unsupported tag": "<speak>Hi <audio src='x.wav'/></speak>",
        "malformed": "<speak>Hi <break time='1s'></speak>",
        "bad inline phonemes": "Say [x](/k9/) now.",
        "unclosed inline phonemes": "Say [x](/kə and go.",
        "unknown request field": None,
    }
    rows = ["| input | status | error.code | error.message |", "|---|---:|---|---|"]
    for label, text in cases.items():
        body = {"input": text, "voice": "rms"} if text is not None else {"input": "Hi.", "temperature": 0.7}
        r = client.post("/v1/audio/speech", json=body)
        err = (
            r.json().get("error", {})
            if r.headers.get("content-type", "").startswith("application/json")
            else {}
        )
        message = str(err.get("message", "")).replace("|", "\\|")
        rows.append(f"| {label} | {r.status_code} | {err.get('code')} | {message} |")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voices-dir", type=Path, default=Path("voices"))
    parser.add_argument("--out", type=Path, default=Path("recipes/reports/say-it-right"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    lexicon = args.out / "lexicon.txt"
    lexicon.write_text(LEXICON, encoding="utf-8")
    client = _client(args.voices_dir, lexicon)
    t0 = time.perf_counter()
    host = f"{platform.processor() or platform.machine()}, {platform.node()}"
    rows, summary = cases_table(client, LEXICON)
    (args.out / "cases.md").write_text("\n".join(rows) + "\n", encoding="utf-8")
    lines, timing = timing_tables(client)
    (args.out / "timing.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    blends, blend_summary = blend_table(client)
    (args.out / "blends.md").write_text("\n".join(blends) + "\n", encoding="utf-8")
    (args.out / "rejects.md").write_text("\n".join(rejects_table(client)) + "\n", encoding="utf-8")
    result = {**summary, **timing, **blend_summary, "seconds": time.perf_counter() - t0, "host": host}
    (args.out / "summary.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    client.__exit__(None, None, None)


if __name__ == "__main__":
    main()
