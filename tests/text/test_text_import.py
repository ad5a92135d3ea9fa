"""The text front end is imported by the server: it must not pull in torch."""

import subprocess
import sys


def test_import_does_not_load_torch():
    code = "import model.text, sys; model.text.text_to_ids('Hello.'); assert 'torch' not in sys.modules"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_import_is_lazy_about_espeak():
    code = "import model.text, sys; assert 'phonemizer' not in sys.modules"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_ssml_does_not_import_markup():
    """markup plans SSML, so ssml must stand below it (the shared types live in model.text.inline)."""
    code = "import model.text.ssml, sys; assert 'model.text.markup' not in sys.modules"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
