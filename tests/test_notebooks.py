"""Run every notebook in nbs/ with nbdev's own test runner, skipping the cells nbdev-test skips (`#| notest`, and `#| slow` unless PROD9_SLOW=1)."""
import atexit, os
from pathlib import Path
import pytest
from nbdev.test import test_nb as run_nb   # renamed so pytest does not collect it
from nbdev.config import get_config

SKIP_FLAGS = get_config().tst_flags.split()      # `notest slow` from [tool.nbdev]: cells nbdev-test skips
NBS = Path(__file__).resolve().parent.parent / 'nbs'
NOTEBOOKS = sorted(p for p in NBS.rglob('*.ipynb') if not any(part.startswith(('_', '.')) for part in p.relative_to(NBS).parts))

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[str(p.relative_to(NBS)) for p in NOTEBOOKS])
def test_notebook(nb, monkeypatch):
    force = ['slow'] if os.environ.get('PROD9_SLOW') else []
    # the tutorials train for a third of their budgets under the suite (their checks still hold); nbdev-test and
    # `tools/build_docs.py outputs` run them in full, which is what their pages show
    monkeypatch.setenv('PROD9_NB_QUICK', '1')
    try: ok, secs = run_nb(nb, skip_flags=SKIP_FLAGS, force_flags=force, basepath=str(NBS.parent))
    finally: _release_shell()
    assert ok, f"{nb.name} failed (see the traceback above)"

def _release_shell():
    """Free the shell nbdev ran the notebook in (execnb's CaptureShell makes itself IPython's current instance): its objects now,
    and its reset at interpreter exit, which IPython registers per shell and which collects the whole heap (~0.5 s per notebook)."""
    from IPython.core.interactiveshell import InteractiveShell
    sh = InteractiveShell._instance
    if sh is None or not hasattr(sh, 'close'): return
    atexit.unregister(sh.atexit_operations)
    sh.close(); sh.user_ns.clear()
    InteractiveShell.clear_instance()
