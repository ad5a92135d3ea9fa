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
) -> None:
    """Normalize TEXT and print the spoken words and the espeak-ng phonemes, one labelled line each."""
    from model.text import default_symbols, normalize, phonemize, split_sentences

    items = _items(text, file)
    table = default_symbols()
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
