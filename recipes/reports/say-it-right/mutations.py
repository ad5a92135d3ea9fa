"""Issue 42: each new test seen failing when its feature is broken. Run from the repository root:

    python recipes/reports/say-it-right/mutations.py [name ...]

Applies each mutation to the source, runs the tests that guard it (expecting a failure), restores the file.
Paths follow the code (issue 39 moved inline markup to model/text/inline.py and the voice to service/voice.py)."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3]
PY = sys.executable
M = [
    (
        "strict fields: extra ignored",
        "service/routers/speech.py",
        'model_config = ConfigDict(extra="forbid", strict=True)\n\n    model: str',
        'model_config = ConfigDict(extra="ignore", strict=True)\n\n    model: str',
        "tests/service/test_say_it_right_http.py::test_unknown_fields_get_openais_400",
    ),
    (
        "OpenAI wording of unknown field",
        "service/errors.py",
        'f"Unrecognized request argument supplied: {param}"',
        'f"Invalid value for {param}"',
        "tests/service/test_say_it_right_http.py::test_unknown_fields_get_openais_400",
    ),
    (
        "lexicon case rule",
        "model/text/lexicon.py",
        "        return self.word != self.word.lower()",
        "        return False",
        "tests/text/test_markup.py::test_lexicon_entries_fire_before_g2p_with_case_rules",
    ),
    (
        "lexicon symbol check",
        "model/text/lexicon.py",
        "    if table is not None:\n        bad =",
        "    if False:\n        bad =",
        "tests/text/test_markup.py::test_lexicon_errors_are_one_line_naming_the_entry",
    ),
    (
        "inline unclosed check",
        "model/text/inline.py",
        "    if m is not None:\n        bracket",
        "    if False:\n        bracket",
        "tests/text/test_markup.py::test_invalid_inline_markup_says_where",
    ),
    (
        "inline phonemes ignored",
        "model/text/inline.py",
        'pieces.append(Piece(word, (offset + m.start(), offset + m.end()), m.group("ipa"), "inline"))',
        "pieces.append(Piece(word, (offset + m.start(), offset + m.end())))",
        "tests/text/test_markup.py::test_inline_phonemes_are_spoken_verbatim_with_spans",
    ),
    (
        "normalization options ignored",
        "model/text/normalize.py",
        "    if options is not None and not options.is_default:\n        return _normalize_with(text, options)",
        "",
        "tests/text/test_markup.py::test_normalization_switches",
    ),
    (
        "ssml DTD allowed",
        "model/text/ssml.py",
        "forbid_dtd=True",
        "forbid_dtd=False",
        "tests/text/test_markup.py::test_bad_ssml_is_an_error_with_a_position",
    ),
    (
        "ssml unsupported tag accepted",
        "model/text/ssml.py",
        "        if name not in _ELEMENTS:\n",
        "        if False:\n",
        "tests/text/test_markup.py::test_bad_ssml_is_an_error_with_a_position",
    ),
    (
        "ssml break ignored",
        "model/text/ssml.py",
        "            self.pause += seconds\n",
        "",
        "tests/text/test_markup.py::test_ssml_segments_breaks_prosody_and_say_as tests/service/test_engine_markup.py::test_break_inserts_exact_silence_between_the_same_sentences",
    ),
    (
        "ssml plain text taken for ssml",
        "model/text/ssml.py",
        r"<speak(?=[\s>/])",
        r"<speak",
        "tests/text/test_markup.py::test_only_input_starting_with_speak_is_ssml",
    ),
    (
        "engine pauses dropped",
        "service/engine.py",
        "    if not (s.pause_before or s.pause_after):\n        return audio",
        "    if True:\n        return audio",
        "tests/service/test_engine_markup.py::test_break_inserts_exact_silence_between_the_same_sentences",
    ),
    (
        "engine rate ignored",
        "service/engine.py",
        "[s.ids], [speaker], [request.speed * s.rate], [request.pitch + s.pitch]",
        "[s.ids], [speaker], [request.speed], [request.pitch + s.pitch]",
        "tests/service/test_engine_markup.py::test_prosody_is_the_rows_speed_and_pitch",
    ),
    (
        "engine batched rate ignored",
        "service/engine.py",
        "[requests[i].speed * live[i][2][k].rate for i in rows]",
        "[requests[i].speed for i in rows]",
        "tests/service/test_engine_markup.py::test_batched_rows_match_one_by_one",
    ),
    (
        "engine lexicon not loaded",
        "service/voice.py",
        "            voice.lexicon = voice.load_lexicons([p for p in (lexicon, mine) if p])",
        "            pass",
        "tests/service/test_engine_markup.py::test_inline_phonemes_and_lexicon_give_the_same_audio",
    ),
    (
        "router markup check off",
        "service/routers/speech.py",
        "    if not has_markup(text):\n        return",
        "    if True:\n        return",
        "tests/service/test_say_it_right_http.py::test_bad_markup_is_a_400_that_says_where",
    ),
    (
        "router normalization dropped",
        "service/routers/speech.py",
        "normalization=_normalization(body.normalization_options),",
        "normalization=None,",
        "tests/service/test_say_it_right_http.py::test_our_extras_and_openais_fields_are_accepted",
    ),
    (
        "cli fired not shown",
        "model/text/cli.py",
        "            for f in s.fired:\n                typer.echo",
        "            for f in ():\n                typer.echo",
        "tests/text/test_markup.py::test_text_cli_shows_fired_entries_and_prosody",
    ),
    (
        "blend weights ignored in engine",
        "service/voice.py",
        "                if isinstance(spk, np.ndarray):\n                    out[b] = spk",
        "                if isinstance(spk, np.ndarray):\n                    out[b, int(np.argmax(spk))] = 1.0",
        "tests/service/test_blend.py::test_engine_blends_are_weighted_embeddings tests/service/test_blend.py::test_shipped_fifty_fifty_blend_has_an_f0_between_its_speakers",
    ),
    (
        "blend syntax not parsed",
        "service/catalog.py",
        '        if "+" not in name:\n            return None',
        "        if True:\n            return None",
        "tests/service/test_blend.py::test_blends_over_http",
    ),
    (
        "blend across bundles allowed",
        "service/catalog.py",
        "        if len(voices) > 1:\n",
        "        if False:\n",
        "tests/service/test_blend.py::test_bad_blends_say_why",
    ),
    (
        "speaker_embedding float ignored",
        "model/wavenet.py",
        "    if speaker.is_floating_point():\n        return speaker.reshape",
        "    if False:\n        return speaker.reshape",
        "tests/service/test_blend.py::test_speaker_embedding_mixes_rows",
    ),
    (
        "format 2 not recognised",
        "service/graphs.py",
        "        if input_names is not None and LEGACY_SPEAKER in input_names:",
        "        if False:",
        "tests/service/test_blend.py::test_format2_bundle_loads_speaks_the_same_and_refuses_blends",
    ),
    (
        "upgrade leaves the gather",
        "export/upgrade.py",
        '            n.op_type = "MatMul"\n            n.input[:] = [n.input[1], n.input[0]]',
        '            n.op_type = "Gather"',
        "tests/service/test_blend.py::test_format2_bundle_loads_speaks_the_same_and_refuses_blends",
    ),
    (
        "web page ignores blend box",
        "service/static/index.html",
        'voice: $("blend").value.trim() || $("voice").value,',
        'voice: $("voice").value,',
        "tests/service/test_web_page.py::test_page_speaks_a_voice_blend",
    ),
    (
        "voices listing without blending",
        "service/routers/info.py",
        '        "blending": _blending(state),',
        "",
        "tests/service/test_blend.py::test_blends_over_http",
    ),
    (
        "say ignores a blend",
        "service/commands.py",
        "seed, pitch, blend=blend)",
        "seed, pitch)",
        "tests/service/test_engine_cli.py::test_say_speaks_a_blend",
    ),
]
only = sys.argv[1:]
for name, path, old, new, tests in M:
    if only and not any(o in name for o in only):
        continue
    p = ROOT / path
    src = p.read_text()
    if old not in src:
        print(f"?? {name}: pattern not found")
        continue
    p.write_text(src.replace(old, new, 1))
    try:
        r = subprocess.run(
            [PY, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests.split()],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        p.write_text(src)
    tail = [x for x in r.stdout.splitlines() if "passed" in x or "failed" in x or "error" in x.lower()][-1:]
    print(f"{'FAILS (good)' if r.returncode != 0 else 'STILL PASSES (bad)'}: {name}: {tail}", flush=True)
