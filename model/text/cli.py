"""``parawave text``: show what the front end makes of some text (words, phonemes, ids)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False, help="Normalize text and print words and phonemes.")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _items(text: str | None, file: Path | None) -> list[tuple[str | None, str]]:
    """(label, text) pairs: the argument, or each non-empty line of the file ("id|text" lines, as in
    an LJSpeech metadata.csv, are labelled with their id)."""
    if text is not None and file is not None:
        _fail("give either TEXT or --file, not both")
    if file is not None:
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"cannot read {file}: {exc}")
        items: list[tuple[str | None, str]] = []
        for line in lines:
            if not line.strip():
                continue
            if "|" in line:
                label, _, rest = line.partition("|")
                items.append((label.strip(), rest.split("|")[0]))
            else:
                items.append((None, line))
        if not items:
            _fail(f"{file} has no text")
        return items
    if text is None or not text.strip():
        _fail("no text given (pass TEXT or --file FILE)")
    return [(None, text)]


@app.command()
def text(
    text: str | None = typer.Argument(None, help="English text, as a user would type it."),
    file: Path | None = typer.Option(None, "--file", "-f", help="Read lines from FILE (plain or id|text)."),
    ids: bool = typer.Option(False, "--ids", help="Also print the phoneme ids."),
    sentences: bool = typer.Option(False, "--sentences", help="Also print the sentence split."),
    lexicon: list[Path] | None = typer.Option(
        None,
        "--lexicon",
        "-l",
        help="Pronunciation lexicon file(s) (word<TAB>/IPA/ or word<TAB>respelling); shows the entries that fired.",
    ),
    no_normalize: bool = typer.Option(False, "--no-normalize", help="Skip text normalization."),
) -> None:
    """Normalize TEXT and print the spoken words and the espeak-ng phonemes, one labelled line each.

    With a lexicon, SSML (input starting with <speak>) or inline phonemes ([word](/IPA/)), it prints the
    sentences as the server speaks them: each one's phonemes, its rate, pitch and pauses, and the
    lexicon entries that fired."""
    from model.text import default_symbols, normalize, phonemize, split_sentences
    from model.text.markup import has_markup
    from model.text.normalize import NormalizationOptions

    items = _items(text, file)
    table = default_symbols()
    options = NormalizationOptions(normalize=False) if no_normalize else None
    if lexicon or no_normalize or any(has_markup(line) for _, line in items):
        _markup(items, table, lexicon or [], options, ids)
        return
    single = len(items) == 1 and file is None
    for n, (label, line) in enumerate(items):
        words = normalize(line)
        if single and not words:
            _fail("nothing speakable in the input")
        try:
            phonemes = phonemize(words)
        except RuntimeError as exc:  # espeak-ng library could not be loaded
            typer.echo(f"error: espeak-ng: {exc}", err=True)
            raise typer.Exit(1) from None
        if n:
            typer.echo("")
        if label is not None:
            typer.echo(f"id:        {label}")
        if sentences:
            for i, s in enumerate(split_sentences(line), 1):
                typer.echo(f"sentence {i}: {s}")
        typer.echo(f"words:     {words}")
        typer.echo(f"phonemes:  {phonemes}")
        if ids:
            typer.echo(f"ids:       {' '.join(map(str, table.encode(phonemes)))}")


def _markup(items, table, lexicon_files: list[Path], options, show_ids: bool) -> None:
    """The server's markup path (model.text.markup), sentence by sentence."""
    from model.text.lexicon import Lexicon, LexiconError, load_lexicon
    from model.text.markup import MarkupError, plan, spoken

    lexicon = Lexicon()
    for f in lexicon_files:
        try:
            lexicon = lexicon.merged(load_lexicon(f, table))
        except LexiconError as exc:
            _fail(str(exc))
    for n, (label, line) in enumerate(items):
        try:
            said = spoken(plan(line), table, lexicon, options)
        except MarkupError as exc:
            _fail(str(exc))
        except RuntimeError as exc:  # espeak-ng library could not be loaded
            typer.echo(f"error: espeak-ng: {exc}", err=True)
            raise typer.Exit(1) from None
        if not said and len(items) == 1:
            _fail("nothing speakable in the input")
        if n:
            typer.echo("")
        if label is not None:
            typer.echo(f"id:        {label}")
        for i, s in enumerate(said, 1):
            prosody = []
            if s.rate != 1.0:
                prosody.append(f"rate x{s.rate:g}")
            if s.pitch:
                prosody.append(f"pitch {s.pitch:+.2f} st")
            if s.pause_before:
                prosody.append(f"pause before {s.pause_before:g} s")
            if s.pause_after:
                prosody.append(f"pause after {s.pause_after:g} s")
            head = f"sentence {i}: {s.text}" if len(said) > 1 else f"words:     {s.text}"
            typer.echo(head + (f"  [{', '.join(prosody)}]" if prosody else ""))
            typer.echo(f"phonemes:  {s.phonemes}")
            if show_ids:
                typer.echo(f"ids:       {' '.join(map(str, table.encode(s.phonemes)))}")
            for f in s.fired:
                typer.echo(f"lexicon:   {f.text} -> {f.entry.value}  ({f.entry.source})")
