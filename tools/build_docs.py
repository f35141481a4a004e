"""Offline docs builds (no quarto needed).

    python tools/build_docs.py readme     # README.md from nbs/index.ipynb
    python tools/build_docs.py check      # exit 1 when README.md is out of date
"""
import re, sys, json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def _clean_cell(src: str):
    "Drop nbdev directive lines; None when the cell is hidden."
    lines = src.splitlines()
    if any(re.match(r'^#\|\s*(hide|export|exporti|default_exp)\b', l) for l in lines): return None
    return '\n'.join(l for l in lines if not l.startswith('#|')).strip('\n')

def readme_text() -> str:
    import nbformat
    from nbconvert import MarkdownExporter
    nb = nbformat.read(ROOT / 'nbs' / 'index.ipynb', as_version=4)
    cells = []
    for c in nb.cells:
        src = _clean_cell(c.source)
        if src is None or not src.strip(): continue
        c.source = src
        c.metadata = {}
        cells.append(c)
    nb.cells = cells
    body, _ = MarkdownExporter().from_notebook_node(nb)
    body = re.sub(r'\n{3,}', '\n\n', body).strip() + '\n'
    return "<!-- Generated from nbs/index.ipynb by `python tools/build_docs.py readme`; do not edit. -->\n\n" + body

def main(argv):
    cmd = argv[1] if len(argv) > 1 else 'readme'
    if cmd == 'readme': (ROOT / 'README.md').write_text(readme_text()); print('wrote README.md'); return 0
    if cmd == 'check':
        ok = (ROOT / 'README.md').exists() and (ROOT / 'README.md').read_text() == readme_text()
        print('README.md is up to date' if ok else 'README.md differs from nbs/index.ipynb: run `python tools/build_docs.py readme`')
        return 0 if ok else 1
    print(__doc__); return 2

if __name__ == '__main__': sys.exit(main(sys.argv))
