"""Run every notebook in nbs/ with nbdev's own test runner (cells flagged `slow` are skipped unless PROD9_SLOW=1)."""
import os
from pathlib import Path
import pytest
from nbdev.test import test_nb as run_nb   # renamed so pytest does not collect it

NBS = Path(__file__).resolve().parent.parent / 'nbs'
NOTEBOOKS = sorted(p for p in NBS.rglob('*.ipynb') if not any(part.startswith(('_', '.')) for part in p.relative_to(NBS).parts))

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[str(p.relative_to(NBS)) for p in NOTEBOOKS])
def test_notebook(nb):
    flags = ['slow'] if os.environ.get('PROD9_SLOW') else None
    ok, secs = run_nb(nb, force_flags=flags, basepath=str(NBS.parent))
    assert ok, f"{nb.name} failed (see the traceback above)"
