"""Service settings: environment variables ``PARAWAVE_<FIELD>`` (or a ``.env`` file) override the defaults.

Lists take JSON or a comma-separated string (``PARAWAVE_CORS_ORIGINS=http://a,http://b``); dicts take
JSON (``PARAWAVE_VOICE_ALIASES='{"alloy": "slt"}'``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_VOICES_DIR = Path(__file__).resolve().parent.parent / "voices"

# OpenAI voice names -> our speakers (the flite voices of the default bundle: slt is a US female
# voice, rms a US male voice, awb a Scottish male voice). "alloy", OpenAI's usual first choice and
# our default voice, is the most intelligible speaker: rms (word error rate 0.18 on the test split vs
# slt 0.26 and awb 0.26, recipes/reports/flite-cpu). When the mapped speaker is not loaded, the name
# falls back to the default voice, so OpenAI clients work with any bundle.
OPENAI_VOICES: dict[str, str] = {
    "alloy": "rms",
    "ash": "rms",
    "ballad": "awb",
    "cedar": "rms",
    "coral": "slt",
    "echo": "rms",
    "fable": "awb",
    "marin": "slt",
    "nova": "slt",
    "onyx": "rms",
    "sage": "slt",
    "shimmer": "slt",
    "verse": "rms",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PARAWAVE_", env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    # Voices and device
    voices_dir: Path = DEFAULT_VOICES_DIR
    default_voice: str | None = Field(
        None,
        description="API voice id; None = the speaker 'alloy' maps to when loaded (rms), else the first "
        "speaker of the first voice.",
    )
    voice_aliases: dict[str, str] = Field(default_factory=lambda: dict(OPENAI_VOICES))
    device: Literal["auto", "cpu", "cuda"] = "auto"
    require_cuda: bool = Field(False, description="Refuse to start when device=cuda and CUDA is missing.")

    # Engine (ONNX Runtime; keyword arguments of service.loading.load_engine, see engine_options)
    intra_op_threads: int | None = Field(
        None,
        ge=0,
        description="CPU threads per ONNX Runtime session. Unset: 1 (service.sessions.DEFAULT_INTRA_OP_THREADS); "
        "0: ONNX Runtime's choice (one per physical core).",
    )
    student_threads: int | None = Field(
        None,
        ge=0,
        description="Student pieces of one utterance run in parallel on the CPU. Unset or 0: the CPUs this "
        "process may use (at most 8); 1: one after another.",
    )
    ort_spin: bool = Field(
        False,
        description="Let idle ONNX Runtime threads spin: lower latency on a dedicated machine, wasted cores "
        "on a shared one.",
    )
    gpu_mem_limit_mb: int | None = Field(
        None, ge=0, description="CUDA arena limit per session in MiB. Unset or 0: no limit."
    )
    teacher_frames_per_call: int | None = Field(
        None,
        ge=1,
        description="Mel frames per teacher step call (how often a reference generation looks at its "
        "cancel flag). Unset: calibrated from the measured speed, ~0.1 s of work per call.",
    )

    malloc_arena_max: int | None = Field(
        2,
        ge=0,
        description="glibc malloc arenas at most (service.allocator): few arenas share their freed memory, "
        "where glibc's default (8 per core) let RSS climb under mixed load with the memory in use flat "
        "(recipes/reports/memory-soak). 0: glibc's default.",
    )

    teacher_temperature: float | None = Field(
        None,
        gt=0,
        le=2,
        description="Sampling temperature of the teacher (the reference endpoint). Unset: each voice's "
        "measured default (voice.json inference.teacher_temperature, 1.0 when absent).",
    )
    lexicon: Path | None = Field(
        None,
        description="Pronunciation lexicon for every voice: a UTF-8 file of 'word<TAB>/IPA/' or "
        "'word<TAB>respelling' lines (model/text/lexicon.py; checked against each voice's symbols at start).",
    )
    voice_lexicons: dict[str, Path] = Field(
        default_factory=dict,
        description='Per-voice lexicons, JSON: {"<voice bundle name>": "path"}; their entries win over '
        "the server-wide lexicon's.",
    )

    # Request limits
    max_input_chars: int = Field(4096, ge=1)
    max_body_bytes: int = Field(65536, ge=1024, description="Larger bodies get 413 (checked before reading).")
    request_timeout_s: float = Field(60.0, gt=0, description="Student: admission to last chunk.")
    reference_max_chars: int = Field(1000, ge=1)
    reference_max_concurrent: int = Field(1, ge=1, description="Teacher generations running at once.")
    reference_timeout_s: float = Field(300.0, gt=0, description="Teacher: admission to last chunk.")
    shutdown_grace_s: float | None = Field(
        None,
        gt=0,
        description="Seconds in-flight requests get to finish after SIGTERM before connections are "
        "closed. Unset: reference_timeout_s + 5 (a reference request admitted just before the stop "
        "still completes; Kubernetes' terminationGracePeriodSeconds must be longer).",
    )

    # Queues and batching
    student_queue_size: int = Field(64, ge=1, description="Student requests waiting beyond the running ones.")
    teacher_queue_size: int = Field(4, ge=1, description="Teacher requests waiting beyond the running ones.")
    student_workers: int = Field(1, ge=1, description="Student batches running at once.")
    max_batch: int | None = Field(
        None,
        ge=1,
        description=(
            "Most student requests in one engine call. Unset: 8 when the student runs on CUDA, 1 on CPU "
            "(measured on 2 CPU cores: batching gave no throughput and a fatter latency tail)."
        ),
    )
    max_batch_delay_ms: float = Field(5.0, ge=0, description="How long a batch waits to fill.")
    retry_after_s: int = Field(1, ge=1, description="Retry-After on 429/503.")

    # HTTP
    api_key: SecretStr | None = Field(
        None, description="When set, /v1 requires 'Authorization: Bearer <key>'."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    # Wyoming (Home Assistant's speech protocol; service/wyoming.py), in the same process as HTTP
    wyoming_uri: str | None = Field(
        None,
        description="Also serve the Wyoming protocol here, e.g. tcp://0.0.0.0:10200 (Home Assistant's port) "
        "or unix:///run/parawave.sock. Unset: HTTP only. No authentication: a trusted network only.",
    )
    wyoming_zeroconf: bool = Field(
        False, description="Announce the Wyoming server over zeroconf (mDNS) so Home Assistant discovers it."
    )
    wyoming_zeroconf_name: str | None = Field(
        None, max_length=63, description="The zeroconf service name. Unset: parawave-<hostname>."
    )

    @property
    def graceful_shutdown_s(self) -> float:
        return self.shutdown_grace_s if self.shutdown_grace_s is not None else self.reference_timeout_s + 5.0

    def engine_options(self) -> dict[str, Any]:
        """The engine knobs as keyword arguments of ``service.loading.load_engine``."""
        return {
            "intra_op_threads": self.intra_op_threads,
            "student_threads": self.student_threads,
            "ort_spin": self.ort_spin,
            "gpu_mem_limit_mb": self.gpu_mem_limit_mb,
            "teacher_frames_per_call": self.teacher_frames_per_call,
            "teacher_temperature": self.teacher_temperature,
            "lexicon": self.lexicon,
            "voice_lexicons": dict(self.voice_lexicons),
        }

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip()
            if value.startswith("["):
                import json

                return json.loads(value)
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("wyoming_uri")
    @classmethod
    def _wyoming_uri(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from urllib.parse import urlparse

        parsed = urlparse(value.strip())
        if parsed.scheme == "tcp":
            try:
                port = parsed.port
            except ValueError:
                port = None
            if parsed.hostname and port is not None:
                return value.strip()
        elif parsed.scheme == "unix" and parsed.path:
            return value.strip()
        raise ValueError("use tcp://host:port (e.g. tcp://0.0.0.0:10200) or unix:///path/to/socket")

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once; ``get_settings.cache_clear()`` re-reads)."""
    return Settings()


def export_to_environment(values: Mapping[str, object]) -> None:
    """Write settings (field name -> value; None skipped) as ``PARAWAVE_<NAME>`` into this process's
    environment, where worker processes started later (uvicorn ``--workers``) read them, and clear
    the cached :func:`get_settings`."""
    for name, value in values.items():
        if value is not None:
            os.environ[f"PARAWAVE_{name.upper()}"] = (
                str(value).lower() if isinstance(value, bool) else str(value)
            )
    get_settings.cache_clear()
