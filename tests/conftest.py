import os, sys, subprocess
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent

def run_cli(*args, cwd=None, env=None, timeout=600):
    "Run a console script; returns CompletedProcess with text stdout/stderr."
    e = {**os.environ, **(env or {})}
    return subprocess.run(list(map(str, args)), cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout)

@pytest.fixture
def cli(): return run_cli
