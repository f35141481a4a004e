"""The offline docs build (tools/build_docs.py html) and its check in headless Chromium (check-html)."""
import subprocess, sys
from pathlib import Path
from conftest import needs_browser

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'tools'))
import build_docs

browser, missing = needs_browser('playwright')

def test_page_names_and_anchors():
    assert build_docs.page_name('60_viz.ipynb') == 'viz.html'
    assert build_docs.page_name('tutorials/maisi.ipynb') == 'tutorials/maisi.html'
    assert build_docs.slug('SliceViewer') == 'sliceviewer' and build_docs.slug('Slice viewer') == 'slice-viewer'
    assert build_docs.slug('MaskGiT stage 2: transformer') == 'maskgit-stage-2-transformer'
    body = build_docs._fix_links('<a href="https://prod9.github.io/prod9/viz.html#sliceviewer">x</a> <a href="../60_viz.ipynb#y">y</a>',
                                 'tutorials/maisi.html', {'viz.html'})
    assert 'href="../viz.html#sliceviewer"' in body and 'href="../viz.html#y"' in body

@browser
def test_offline_docs_build_and_check(tmp_path):
    assert not missing, f"PROD9_BROWSER_TESTS=1 but missing: {missing}"
    r = subprocess.run([sys.executable, str(ROOT / 'tools' / 'build_docs.py'), 'html', '--out', str(tmp_path / 'site')], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    pages = {str(p.relative_to(tmp_path / 'site')) for p in (tmp_path / 'site').rglob('*.html')}
    nbs = [p for p in (ROOT / 'nbs').rglob('*.ipynb') if not any(s.startswith(('_', '.')) for s in p.relative_to(ROOT / 'nbs').parts)]
    assert len(pages) == len(nbs) and {'index.html', 'viz.html', 'tutorials/maisi.html'} <= pages
    assert 'images/jupyterlab/1_rendered.png' in (tmp_path / 'site' / 'viz.html').read_text()
    problems = build_docs.check_html(tmp_path / 'site')
    assert not problems, '\n'.join(problems)

@browser
def test_check_html_finds_problems(tmp_path):
    "The checker is not a rubber stamp: a broken link, a broken anchor, a missing image and missing API docs are reported."
    (tmp_path / 'viz.html').write_text('<html><body><main><h1>Viewers</h1>' + 'text ' * 60 +
                                       '<a href="nowhere.html">a</a><a href="other.html#nope">b</a><img src="missing.png"></main></body></html>')
    (tmp_path / 'other.html').write_text('<html><body><main><h1 id="top">Other</h1>' + 'text ' * 60 + '</main></body></html>')
    problems = '\n'.join(build_docs.check_html(tmp_path))
    for expected in ('broken link nowhere.html', 'broken anchor other.html#nope', 'image does not load: missing.png', 'API docs missing for', 'SliceViewer'):
        assert expected in problems, problems
