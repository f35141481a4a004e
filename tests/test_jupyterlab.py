"""The viewers in a real JupyterLab, driven by headless Chromium (tools/jupyterlab_check.py).

Runs when Chromium, JupyterLab and Playwright are installed (`.ci/run` installs them); with PROD9_BROWSER_TESTS=1 a missing
browser is a failure instead of a skip.
"""
import json, subprocess, sys
from pathlib import Path
from conftest import needs_browser

ROOT = Path(__file__).resolve().parent.parent
browser, missing = needs_browser('jupyterlab', 'playwright')

@browser
def test_viewers_in_jupyterlab(tmp_path):
    assert not missing, f"PROD9_BROWSER_TESTS=1 but missing: {missing}"
    r = subprocess.run([sys.executable, str(ROOT / 'tools' / 'jupyterlab_check.py'), '--out', str(tmp_path)], capture_output=True, text=True, timeout=600)
    result = json.loads((tmp_path / 'result.json').read_text())
    why = {k: result.get(k) for k in ('error', 'checks', 'page_state')}   # page_state: screenshot, HTML, outputs, console
    assert r.returncode == 0 and result['passed'], json.dumps(why, indent=1)[-6000:] + r.stderr[-2000:]
    assert result['slice'][1] > result['slice'][0]
    for name in ('1_rendered.png', '2_slice_viewer_after.png', '3_token_viewer_after.png'):
        assert (tmp_path / name).stat().st_size > 10_000, f"screenshot {name} is suspiciously small"
