import importlib.util, os, shutil, sys, subprocess
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent

def run_cli(*args, cwd=None, env=None, timeout=600):
    """Run a console script; returns CompletedProcess with text stdout/stderr. The script imports this checkout's prod9
    (PYTHONPATH), whichever checkout the installed entry point was made from."""
    e = {**os.environ, 'PYTHONPATH': os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')])), **(env or {})}
    return subprocess.run(list(map(str, args)), cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout)

@pytest.fixture
def cli(): return run_cli

def browser_missing(*modules) -> list:
    "What the headless-Chromium checks lack here: Python `modules` and Debian's chromium (or PROD9_CHROMIUM)."
    missing = [n for n in modules if importlib.util.find_spec(n) is None]
    if not (shutil.which('chromium') or os.environ.get('PROD9_CHROMIUM')): missing.append('chromium (apt-get install chromium)')
    return missing

def needs_browser(*modules):
    """Skip when the browser tools are missing, unless PROD9_BROWSER_TESTS=1 (as `.ci/run` sets): then the test runs and fails
    on what is missing. Returns (pytest mark, list of what is missing)."""
    missing = browser_missing(*modules)
    required = os.environ.get('PROD9_BROWSER_TESTS') == '1'
    return pytest.mark.skipif(bool(missing) and not required, reason=f"needs {', '.join(missing)}; `pip install -e '.[browser]'` and `apt-get install chromium`"), missing
