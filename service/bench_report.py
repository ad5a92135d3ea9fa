"""``parawave bench --json``: the benchmark's numbers as one JSON object, for scripts.

``recipes/gpu_check.py`` reads this instead of the human table. One object on stdout (the progress
lines go to stderr); times in seconds, rates in samples per second, memory in MiB::

    {"version": 1, "voice", "speaker", "sample_rate", "device",
     "providers": {"student": "CPUExecutionProvider", "teacher": ...},
     "host": {cpu_model, cpu_count, cpu_usable, memory_gib, gpus, platform, python, "load": [1, 5, 15 min]},
     "input": {"chars", "sentences", "audio_s", "text_front_end": false when ids stood in for the text},
     "rtf": {"input": "text" | "ids", "runs", "best", "median", "cpu_s_per_audio_s",
             "ttfa_s": {"best", "median"}}                         (null: the bundle has no student),
     "acoustic_s": the acoustic model alone on the whole input,
     "student": [{"precision": "fp32" | "fp16", "batch", "samples_per_s" (best run),
                  "median_samples_per_s", "best_ms", "utterance_s", "served": the engine's own graph}],
     "teacher": {"samples_per_s", "seconds", "audio_s", "rtf"}    (null: skipped or no teacher),
     "student_over_teacher": {"batch", "ratio"}                   (null without both),
     "peak_rss_mib"}

Every field is always there (null when not measured), so a reader can index without guessing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

VERSION = 1
FIELDS = (
    "version",
    "voice",
    "speaker",
    "sample_rate",
    "device",
    "providers",
    "host",
    "input",
    "rtf",
    "acoustic_s",
    "student",
    "teacher",
    "student_over_teacher",
    "peak_rss_mib",
)


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def new_record(voice: str, speaker: str, sample_rate: int, device: str, providers: Mapping[str, str]) -> dict:
    """The record a bench run fills in: every field of the module docstring, the measured ones None."""
    from service.loadtest import hardware

    record: dict[str, Any] = dict.fromkeys(FIELDS)
    record.update(
        version=VERSION,
        voice=voice,
        speaker=speaker,
        sample_rate=sample_rate,
        device=device,
        providers=dict(providers),
        host={**hardware.describe(), "load": load_average()},
        student=[],
    )
    return record


def to_json(record: Mapping[str, Any]) -> str:
    """The record as one JSON document; a missing or unknown field is a bug in the bench (ValueError)."""
    missing = [k for k in FIELDS if k not in record]
    extra = [k for k in record if k not in FIELDS]
    if missing or extra:
        raise ValueError(f"bench record: missing {missing}, unknown {extra}")
    return json.dumps(record, indent=2, allow_nan=False)
