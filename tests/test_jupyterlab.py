"""The viewers in a real JupyterLab, driven by headless Chromium (tools/jupyterlab_check.py).

Runs when Chromium, JupyterLab and Playwright are installed (`.ci/run` installs them); with PROD9_BROWSER_TESTS=1 a missing
browser is a failure instead of a skip.
"""
import importlib.util, json, os, shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = os.environ.get('PROD9_BROWSER_TESTS') == '1'
missing = [n for n in ('jupyterlab', 'playwright') if importlib.util.find_spec(n) is None]
if not (shutil.which('chromium') or os.environ.get('PROD9_CHROMIUM')): missing.append('chromium (apt-get install chromium)')

@pytest.mark.skipif(bool(missing) and not REQUIRED, reason=f"needs {', '.join(missing)}; `pip install -e '.[browser]'` and `apt-get install chromium`")
def test_viewers_in_jupyterlab(tmp_path):
    assert not missing, f"PROD9_BROWSER_TESTS=1 but missing: {missing}"
    r = subprocess.run([sys.executable, str(ROOT / 'tools' / 'jupyterlab_check.py'), '--out', str(tmp_path)], capture_output=True, text=True, timeout=600)
    result = json.loads((tmp_path / 'result.json').read_text())
    assert r.returncode == 0 and result['passed'], r.stdout[-4000:] + r.stderr[-2000:]
    assert result['slice'][1] > result['slice'][0]
    for name in ('1_rendered.png', '2_slice_viewer_after.png', '3_token_viewer_after.png'):
        assert (tmp_path / name).stat().st_size > 10_000, f"screenshot {name} is suspiciously small"
