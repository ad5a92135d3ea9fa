"""Locust load test for the speech (student) and reference (teacher) endpoints.

    pip install -e '.[load]'
    locust -f service/loadtest/locustfile.py --host http://127.0.0.1:8000            # web UI on :8089
    locust -f service/loadtest/locustfile.py --host http://127.0.0.1:8000 --headless -u 16 -r 4 -t 2m

Tasks (weights): streamed speech 8, whole (unstreamed) speech 2, streamed reference 1 (short texts:
the teacher is slow). Each response is read as it arrives, so besides Locust's own entry (time to
the response headers for streamed requests) every request reports two more: ``TTFA`` (request sent
-> first audio byte, wav header excluded) and ``LATENCY`` (-> last byte). A 200 without audio, or
a cut stream, is a failure.

Options (also as environment variables): ``--parawave-voice`` (PARAWAVE_LOAD_VOICE),
``--parawave-format`` wav|pcm (PARAWAVE_LOAD_FORMAT), ``--parawave-api-key`` (PARAWAVE_API_KEY),
``--parawave-no-reference`` to leave the teacher out.
"""

from __future__ import annotations

import random
import time

from locust import HttpUser, between, events, task

from service.loadtest.meter import AudioMeter
from service.loadtest.sentences import SENTENCES, SHORT_SENTENCES

SPEECH = "/v1/audio/speech"
REFERENCE = "/v1/audio/speech/reference"


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    group = parser.add_argument_group("parawave")
    group.add_argument("--parawave-voice", env_var="PARAWAVE_LOAD_VOICE", default="", help="Voice id.")
    group.add_argument(
        "--parawave-format", env_var="PARAWAVE_LOAD_FORMAT", default="wav", choices=["wav", "pcm"]
    )
    group.add_argument("--parawave-api-key", env_var="PARAWAVE_API_KEY", default="", help="Bearer key.")
    group.add_argument(
        "--parawave-no-reference", action="store_true", help="Leave out the reference (teacher) task."
    )


class SpeechUser(HttpUser):
    wait_time = between(0.1, 1.0)

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        self.fmt = getattr(opts, "parawave_format", "wav") if opts else "wav"
        self.voice = getattr(opts, "parawave_voice", "") if opts else ""
        key = getattr(opts, "parawave_api_key", "") if opts else ""
        self.reference_on = not (getattr(opts, "parawave_no_reference", False) if opts else False)
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    @task(8)
    def speech_streamed(self) -> None:
        self.speak(SPEECH, random.choice(SENTENCES), stream=True, name="speech (stream)")

    @task(2)
    def speech_whole(self) -> None:
        self.speak(SPEECH, random.choice(SENTENCES), stream=False, name="speech (whole)")

    @task(1)
    def reference_streamed(self) -> None:
        if self.reference_on:
            self.speak(REFERENCE, random.choice(SHORT_SENTENCES), stream=True, name="reference (stream)")

    def speak(self, path: str, text: str, *, stream: bool, name: str) -> None:
        body = {"input": text, "response_format": self.fmt, "stream": stream}
        if self.voice:
            body["voice"] = self.voice
        t0 = time.perf_counter()
        ttfa = None
        with self.client.post(
            path, json=body, headers=self.headers, stream=True, catch_response=True, name=name
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            rate = response.headers.get("X-Sample-Rate")
            try:
                meter = AudioMeter(self.fmt, int(rate) if rate else None)
                for piece in response.iter_content(chunk_size=None):
                    if meter.feed(piece) and ttfa is None:
                        ttfa = time.perf_counter() - t0
            except Exception as exc:  # a cut stream or a malformed body fails this request, not the user
                response.failure(f"{type(exc).__name__}: {exc}")
                return
            if meter.audio_bytes == 0:
                response.failure("200 without audio")
                return
            response.success()
        latency = time.perf_counter() - t0
        for kind, seconds in (("TTFA", ttfa), ("LATENCY", latency)):
            self.environment.events.request.fire(
                request_type=kind,
                name=name,
                response_time=seconds * 1000.0,
                response_length=meter.audio_bytes,
                exception=None,
                context={"audio_s": meter.audio_seconds},
            )
