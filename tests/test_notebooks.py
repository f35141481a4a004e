"""Run every notebook in nbs/ with nbdev's own test runner, skipping the cells nbdev-test skips (`#| notest`, and `#| slow` unless PROD9_SLOW=1)."""
import os
from pathlib import Path
import pytest
from nbdev.test import test_nb as run_nb   # renamed so pytest does not collect it
from nbdev.config import get_config

SKIP_FLAGS = get_config().tst_flags.split()      # `notest slow` from [tool.nbdev]: cells nbdev-test skips
NBS = Path(__file__).resolve().parent.parent / 'nbs'
NOTEBOOKS = sorted(p for p in NBS.rglob('*.ipynb') if not any(part.startswith(('_', '.')) for part in p.relative_to(NBS).parts))

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[str(p.relative_to(NBS)) for p in NOTEBOOKS])
def test_notebook(nb):
    force = ['slow'] if os.environ.get('PROD9_SLOW') else []
    ok, secs = run_nb(nb, skip_flags=SKIP_FLAGS, force_flags=force, basepath=str(NBS.parent))
    assert ok, f"{nb.name} failed (see the traceback above)"
