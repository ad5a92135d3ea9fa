"""docker/nginx.conf: the directives the scale-out needs, ``nginx -t``, and nginx itself in front of
two live servers (fake engines): unbuffered streaming, least_conn spreading, the error envelope.

The copy under test differs from the shipped file only where the container network is replaced
by loopback: the upstream servers, the listen address, and the pid/temp paths (so nginx need not
be root). Skipped where nginx is not installed (run.sh's install_dev installs nginx-light).
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

SERVICE_TESTS = Path(__file__).resolve().parents[1] / "service"
if str(SERVICE_TESTS) not in sys.path:
    sys.path.insert(0, str(SERVICE_TESTS))

from fake_engine import FakeEngine, LiveServer, expected_audio, make_settings, wait_for  # noqa: E402

from service.app import create_app  # noqa: E402
from service.settings import Settings  # noqa: E402

CONF = Path(__file__).resolve().parents[2] / "docker" / "nginx.conf"
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
)
needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx-light)")

TEXT = "The quick brown fox jumps over the lazy dog. It was not amused! Was it, really?"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_copy(folder: Path, upstreams: list[str], listen_port: int) -> Path:
    """The shipped config with the container network swapped for loopback addresses."""
    text = CONF.read_text()
    text, n = re.subn(
        r"^(\s*)server\s+backend:8000(.*);$",
        lambda m: "\n".join(f"{m.group(1)}server {u}{m.group(2)};" for u in upstreams),
        text,
        flags=re.M,
    )
    assert n == 1, "the upstream server line changed: update this test"
    text, n = re.subn(r"^(\s*)listen\s+8080;", rf"\1listen 127.0.0.1:{listen_port};", text, flags=re.M)
    assert n == 1
    text, n = re.subn(r"^pid\s+\S+;", f"pid {folder / 'nginx.pid'};", text, flags=re.M)
    assert n == 1
    temp = "".join(
        f"    {kind}_temp_path {folder / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = text.replace("http {\n", "http {\n" + temp, 1)
    path = folder / "nginx.conf"
    path.write_text(text)
    return path


def test_config_streams_unbuffered_with_long_reference_timeouts():
    conf = CONF.read_text()
    for directive in (
        "least_conn;",
        "zone parawave 64k;",  # least_conn across worker processes
        "proxy_buffering off;",
        "proxy_cache off;",
        "chunked_transfer_encoding on;",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "gzip off;",
    ):
        assert directive in conf, directive
    defaults = Settings.model_fields
    ref = re.search(r"location = /v1/audio/speech/reference \{(.*?)\}", conf, re.S).group(1)
    ref_timeout = int(re.search(r"proxy_read_timeout (\d+)s;", ref).group(1))
    assert ref_timeout > defaults["reference_timeout_s"].default  # the teacher's own limit comes first
    server_level = re.sub(r"location[^{]*\{.*?\}", "", conf, flags=re.S)
    student_timeout = int(re.search(r"proxy_read_timeout (\d+)s;", server_level).group(1))
    assert student_timeout > defaults["request_timeout_s"].default
    body_limit = re.search(r"client_max_body_size (\d+)([km]);", conf)
    limit = int(body_limit.group(1)) * {"k": 1024, "m": 1024 * 1024}[body_limit.group(2)]
    assert limit > defaults["max_body_bytes"].default  # the service answers 413 in its own envelope


@needs_nginx
def test_nginx_t_accepts_the_config(tmp_path):
    conf = loopback_copy(tmp_path, ["127.0.0.1:8000"], 8080)
    out = subprocess.run(
        [NGINX, "-t", "-q", "-p", str(tmp_path), "-e", "stderr", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    broken = tmp_path / "broken.conf"  # and it does reject a broken one
    broken.write_text(conf.read_text().replace("least_conn;", "least_conn"))
    bad = subprocess.run(
        [NGINX, "-t", "-q", "-p", str(tmp_path), "-e", "stderr", "-c", str(broken)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0


class Nginx:
    def __init__(self, folder: Path, upstreams: list[str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        conf = loopback_copy(folder, upstreams, self.port)
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(folder), "-e", "stderr", "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120  # against a hang only: a loaded host may take its time
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stdout.read().decode()
            try:
                if httpx.get(f"{self.url}/proxy/health", timeout=10).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)  # between every two tries, whatever the answer (no busy loop)
        raise AssertionError("nginx did not come up")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGQUIT)  # graceful: finish requests, then exit
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def proxied(tmp_path):
    """proxied(engines) -> (nginx, servers): live servers behind nginx on loopback."""
    started: list = []

    def make(engines: list[FakeEngine], **settings):
        servers = [LiveServer(create_app(make_settings(**settings), engine=e)).start() for e in engines]
        started.extend(servers)
        nginx = Nginx(tmp_path, [s.url.removeprefix("http://") for s in servers])
        started.append(nginx)
        return nginx, servers

    yield make
    for thing in reversed(started):
        thing.stop()


@needs_nginx
def test_audio_streams_through_nginx_unbuffered(proxied):
    hold = threading.Event()
    engine = FakeEngine(hold_after_first=hold)
    nginx, _ = proxied([engine])
    first_sentence = expected_audio("The quick brown fox jumps over the lazy dog.")
    with (
        httpx.Client(timeout=30) as http,
        http.stream(
            "POST",
            f"{nginx.url}/v1/audio/speech",
            json={"input": TEXT, "response_format": "wav", "stream": True},
        ) as r,
    ):
        assert r.status_code == 200
        assert r.headers.get("transfer-encoding") == "chunked"
        received = b""
        chunks = r.iter_raw()
        while len(received) < 44 + 2 * len(first_sentence):
            received += next(chunks)
        # the engine is parked after its first sentence: nginx passed it on without waiting for more
        assert engine.chunks_made == 1 and not engine.completed
        hold.set()
        received += b"".join(chunks)
    assert len(received) == 44 + 2 * len(expected_audio(TEXT))


@needs_nginx
def test_least_conn_sends_the_second_request_to_the_idle_replica(proxied):
    gates = [threading.Event(), threading.Event()]
    engines = [FakeEngine(gate=g) for g in gates]
    nginx, _ = proxied(engines)
    results: list[int] = []

    def call(text: str) -> None:
        r = httpx.post(
            f"{nginx.url}/v1/audio/speech", json={"input": text, "response_format": "pcm"}, timeout=30
        )
        results.append(r.status_code)

    threads = [threading.Thread(target=call, args=(t,)) for t in ("One request.", "Another request.")]
    threads[0].start()
    # the first request holds one replica...
    wait_for(lambda: any(e.started.is_set() for e in engines), timeout=60, what="the first request")
    threads[1].start()
    for e in engines:  # ...so the second goes to the other one
        assert e.started.wait(60), [len(e.calls) for e in engines]
    for g in gates:
        g.set()
    for t in threads:
        t.join(30)
    assert results == [200, 200]
    assert sorted(len(e.calls) for e in engines) == [1, 1]


@needs_nginx
def test_reference_endpoint_and_429_pass_through(proxied):
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    nginx, (server,) = proxied([engine], teacher_queue_size=1, reference_max_concurrent=1, retry_after_s=3)
    teacher = server.app.state.parawave.pools["teacher"]
    body = {"input": "A short reference.", "response_format": "wav", "stream": True}
    results: list[httpx.Response] = []
    held = [
        threading.Thread(
            target=lambda: results.append(
                httpx.post(f"{nginx.url}/v1/audio/speech/reference", json=body, timeout=30)
            )
        )
        for _ in range(2)
    ]
    for t in held:
        t.start()
    # one generating (held by the gate), one in the queue: full
    wait_for(lambda: teacher.outstanding >= 2, timeout=60, what="2 reference requests admitted")
    over = httpx.post(f"{nginx.url}/v1/audio/speech/reference", json=body, timeout=30)
    assert over.status_code == 429 and over.headers["retry-after"] == "3"
    assert over.json()["error"]["code"] == "queue_full"  # the replica's answer, not nginx's
    gate.set()
    for t in held:
        t.join(30)
    assert [r.status_code for r in results] == [200, 200]
    assert all(r.headers["x-parawave-model"] == "teacher" for r in results)


@needs_nginx
def test_no_replica_gives_the_openai_error_envelope(tmp_path):
    dead = f"127.0.0.1:{_free_port()}"  # nothing listens there
    nginx = Nginx(tmp_path, [dead])
    try:
        r = httpx.post(f"{nginx.url}/v1/audio/speech", json={"input": "Anyone?"}, timeout=30)
    finally:
        nginx.stop()
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    error = r.json()["error"]
    assert error["code"] == "upstream_unavailable" and error["type"] == "server_error"
