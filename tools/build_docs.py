"""Offline docs builds (no quarto needed).

    python tools/build_docs.py readme              # README.md from nbs/index.ipynb
    python tools/build_docs.py check               # exit 1 when README.md is out of date
    python tools/build_docs.py html [--out DIR]    # the docs site as static HTML (default _offline_docs/), from nbdev's processed notebooks
    python tools/build_docs.py check-html [--out DIR]   # open every page in headless Chromium: renders, images load,
                                                   # API docs present, no broken internal link, no network request
    python tools/build_docs.py outputs NB.ipynb ...  # run notebooks and keep their small outputs (figures as compressed PNGs, short prints)
    python tools/build_docs.py compress NB.ipynb ... # re-encode the PNG outputs a notebook already holds (compress_png), running nothing

The published site is built by quarto from the same processed notebooks (`.github/workflows/deploy.yaml`, `nbs/_quarto.yml`);
the offline build follows quarto's page names (`60_viz.ipynb` → `viz.html`) and heading anchors, so nbdev's doc links
(`https://prod9.github.io/prod9/viz.html#sliceviewer`) are rewritten to the local pages.
"""
import html, json, os.path, re, shutil, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / 'nbs'
SITE_URL = 'https://prod9.github.io/prod9/'

def _clean_cell(src: str):
    "Drop nbdev directive lines; None when the cell is hidden."
    lines = src.splitlines()
    if any(re.match(r'^#\|\s*(hide|export|exporti|default_exp)\b', l) for l in lines): return None
    return '\n'.join(l for l in lines if not l.startswith('#|')).strip('\n')

def readme_text() -> str:
    import nbformat
    from nbconvert import MarkdownExporter
    nb = nbformat.read(NBS / 'index.ipynb', as_version=4)
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

# ---------------------------------------------------------------- offline HTML
def page_name(nb_rel: str) -> str:
    "Quarto's output name: `60_viz.ipynb` → `viz.html`, `tutorials/maisi.ipynb` → `tutorials/maisi.html`."
    p = Path(nb_rel)
    return str(p.with_name(re.sub(r'^\d+_', '', p.stem) + '.html'))

def slug(text: str) -> str:
    "Pandoc's heading identifier (what quarto uses for anchors)."
    s = re.sub(r'[^\w\s.-]', '', text.lower(), flags=re.UNICODE).strip()
    s = re.sub(r'\s+', '-', s)
    return re.sub(r'^[^a-z]+', '', s) or 'section'

def sidebar(nbs=NBS):
    "[(section title or None, [notebook paths relative to nbs])] from nbs/sidebar.yml."
    import yaml
    items = yaml.safe_load((nbs / 'sidebar.yml').read_text())['website']['sidebar']['contents']
    out = []
    for it in items:
        if isinstance(it, str): out.append((None, [it]))
        else: out.append((it['section'], list(it['contents'])))
    return out

def _md(text: str) -> str:
    import mistune
    text = re.sub(r'\)\{target="_blank"[^}]*\}', ')', text)           # pandoc link attributes from show_doc
    return mistune.create_markdown(escape=False, plugins=['table', 'strikethrough', 'url'])(text)

def _rel(from_page: str, to_page: str) -> str:
    return os.path.relpath(to_page, start=str(Path(from_page).parent) or '.').replace('\\', '/')

def _fix_links(body: str, page: str, pages: set) -> str:
    "Local notebook links → .html pages; nbdev's absolute doc links → relative links to the offline pages."
    def docurl(m):
        target, frag = m.group(1), m.group(2) or ''
        return f'href="{_rel(page, target)}{frag}"' if target in pages else m.group(0)
    body = re.sub(r'href="' + re.escape(SITE_URL) + r'([^"#]+)(#[^"]*)?"', docurl, body)
    def nblink(m):
        tgt = page_name(os.path.normpath(str(Path(page).parent / (m.group(1) + '.ipynb'))))
        return f'href="{_rel(page, tgt)}{m.group(2) or ""}"'
    return re.sub(r'href="(?!https?:)([^"#]+)\.ipynb(#[^"]*)?"', nblink, body)

def _heading_ids(body: str) -> str:
    def fix(m):
        level, attrs, inner = m.group(1), m.group(2), m.group(3)
        attrs = re.sub(r'\s*id="[^"]*"', '', attrs)
        text = html.unescape(re.sub(r'<[^>]+>', '', inner))
        return f'<h{level}{attrs} id="{slug(text)}">{inner}</h{level}>'
    return re.sub(r'<h([1-6])([^>]*)>(.*?)</h\1>', fix, body, flags=re.S)

def _highlight(code: str) -> str:
    from pygments import highlight
    from pygments.lexers import PythonLexer
    from pygments.formatters import HtmlFormatter
    return highlight(code, PythonLexer(), HtmlFormatter(cssclass='highlight'))

ANSI = re.compile(r'\x1b\[[0-9;]*m')

def _output_html(o) -> str:
    t = o.get('output_type')
    if t == 'stream': return f'<pre class="output stream">{html.escape("".join(o["text"]))}</pre>'
    if t == 'error':
        tb = '\n'.join(ANSI.sub('', l) for l in o['traceback'])
        return f'<pre class="output error">{html.escape(tb)}</pre>'
    d = o.get('data', {})
    if 'image/png' in d: return f'<img class="output" alt="output figure" src="data:image/png;base64,{"".join(d["image/png"]).strip()}">'
    if 'image/svg+xml' in d: return '<div class="output">' + ''.join(d['image/svg+xml']) + '</div>'
    if 'text/markdown' in d: return '<div class="output markdown">' + _md(''.join(d['text/markdown'])) + '</div>'
    if 'text/html' in d: return '<div class="output">' + ''.join(d['text/html']) + '</div>'
    if 'text/plain' in d: return f'<pre class="output">{html.escape("".join(d["text/plain"]))}</pre>'
    return ''

def render_notebook(nb: dict, page: str, pages: set) -> tuple[str, str]:
    "(title, body html) of a processed notebook."
    import yaml
    title, parts = Path(page).stem, []
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'raw' and src.startswith('---'):
            fm = yaml.safe_load(src.strip().strip('-')) or {}
            title = fm.get('title', title)
            parts.append(f'<h1 class="title">{_md(title)[3:-5]}</h1>')
            if fm.get('description'): parts.append(f'<p class="description">{_md(fm["description"])[3:-5]}</p>')
            continue
        if c['cell_type'] == 'markdown':
            if src.startswith('<!-- WARNING'): continue
            parts.append('<div class="cell markdown">' + _md(src) + '</div>'); continue
        if c['cell_type'] != 'code': continue
        dirs = dict((m.group(1), m.group(2).strip()) for m in re.finditer(r'^#\|\s*([\w-]+):?\s*(.*)$', src, re.M))
        code = '\n'.join(l for l in src.splitlines() if not l.startswith('#|')).strip('\n')
        cell = []
        if dirs.get('echo', 'true') != 'false' and code.strip(): cell.append('<div class="input">' + _highlight(code) + '</div>')
        cell += [_output_html(o) for o in c.get('outputs', [])]
        if any(cell): parts.append('<div class="cell code">' + ''.join(cell) + '</div>')
    body = _fix_links(_heading_ids('\n'.join(parts)), page, pages)
    return title, body

CSS = """
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;line-height:1.5}
nav{position:fixed;top:0;left:0;bottom:0;width:250px;overflow:auto;background:#f6f7f9;border-right:1px solid #ddd;padding:1em;font-size:.92em;box-sizing:border-box}
nav h2{font-size:1.2em;margin:0 0 .6em} nav h3{font-size:.8em;text-transform:uppercase;color:#666;margin:1.2em 0 .3em}
nav ul{list-style:none;padding:0;margin:0} nav li{margin:.15em 0} nav a{color:#1a5fb4;text-decoration:none} nav a.current{font-weight:bold;color:#000}
main{margin-left:250px;padding:1.5em 3em;max-width:1000px}
h1.title{margin-bottom:.2em} p.description{color:#555;font-size:1.1em;margin-top:0}
pre,code{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.88em}
.input .highlight{background:#f5f5f5;border-left:3px solid #9ab;padding:.1em .8em;overflow:auto}
pre.output{background:#fff;border-left:3px solid #ddd;padding:.3em .8em;overflow:auto;max-height:30em}
pre.error{border-left-color:#c33} img{max-width:100%} table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:.2em .5em}
.output.markdown{border-top:1px solid #eee;margin:1em 0}
"""

def _nav(page: str, titles: dict, sections) -> str:
    out = [f'<h2><a href="{_rel(page, "index.html")}">prod9</a></h2>']
    for sec, items in sections:
        if sec: out.append(f'<h3>{html.escape(sec)}</h3>')
        out.append('<ul>' + ''.join(
            f'<li><a href="{_rel(page, page_name(nb))}"{" class=current" if page_name(nb) == page else ""}>{html.escape(titles[page_name(nb)].replace("`", ""))}</a></li>'
            for nb in items) + '</ul>')
    return '<nav>' + ''.join(out) + '</nav>'

def build_html(out: Path, proc_dir: Path | None = None, workers: int = 0) -> list[str]:
    """Process the notebooks with nbdev (show_doc cells executed) and write one HTML page per notebook into `out`. `workers` 0
    processes them in this process: each of nbdev's spawned workers would import torch, MONAI and Lightning again (about 10 s
    each), which costs more than the processing itself (about 16 s for every page on 2 cores)."""
    from pygments.formatters import HtmlFormatter
    if proc_dir is None:
        from nbdev.quarto import proc_nbs
        proc_dir = Path(proc_nbs(n_workers=workers))
    sections = sidebar()
    nbs = [nb for _, items in sections for nb in items]
    pages = {page_name(nb) for nb in nbs}
    missing = [nb for nb in nbs if not (proc_dir / nb).exists()]
    if missing: raise SystemExit(f"sidebar.yml lists notebooks that nbdev did not process: {missing}")
    unlisted = sorted(str(p.relative_to(NBS)) for p in NBS.rglob('*.ipynb') if not any(s.startswith(('_', '.')) for s in p.relative_to(NBS).parts)
                      and str(p.relative_to(NBS)) not in nbs)
    if unlisted: raise SystemExit(f"notebooks missing from nbs/sidebar.yml (add them so they get a page): {unlisted}")
    if out.exists(): shutil.rmtree(out)
    out.mkdir(parents=True)
    rendered = {}
    for nb in nbs:
        rendered[page_name(nb)] = render_notebook(json.loads((proc_dir / nb).read_text()), page_name(nb), pages)
    titles = {p: t for p, (t, _) in rendered.items()}
    css = CSS + HtmlFormatter(cssclass='highlight').get_style_defs('.highlight')
    (out / 'style.css').write_text(css)
    for p, (title, body) in rendered.items():
        f = out / p; f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} – prod9</title>'
                     f'<link rel="stylesheet" href="{_rel(p, "style.css")}"></head><body>{_nav(p, titles, sections)}'
                     f'<main>{body}</main></body></html>\n')
    if (NBS / 'images').exists(): shutil.copytree(NBS / 'images', out / 'images')
    return sorted(rendered)

def api_names(page: str) -> list[str]:
    "Exported names documented on `page` (from the package index nbdev writes), e.g. ['SliceViewer', ...]."
    sys.path.insert(0, str(ROOT))
    from prod9._modidx import d
    names = []
    for mod, syms in d['syms'].items():
        for full, (url, _) in syms.items():
            if url.split('#')[0] == page and full.count('.') == 2 and not full.split('.')[-1].startswith('_'): names.append(full.split('.')[-1])
    return names

def check_html(out: Path, chromium: str | None = None) -> list[str]:
    "Open every page in headless Chromium; return the problems found (empty = pass)."
    from playwright.sync_api import sync_playwright
    sys.path.insert(0, str(ROOT / 'tools'))
    from jupyterlab_check import find_chromium
    pages = sorted(str(p.relative_to(out)) for p in out.rglob('*.html'))
    if not pages: return [f"{out}: no HTML pages; run `python tools/build_docs.py html --out {out}` first"]
    problems, ids, links = [], {}, []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=find_chromium(chromium), headless=True, args=['--no-sandbox', '--disable-gpu'])
        page = browser.new_page()
        errors, requests = [], []
        page.on('pageerror', lambda e: errors.append(str(e)))
        page.on('console', lambda m: errors.append(m.text) if m.type == 'error' else None)
        page.on('request', lambda r: requests.append(r.url) if not r.url.startswith(('file:', 'data:', 'about:')) else None)
        for p in pages:
            errors.clear(); requests.clear()
            page.goto((out / p).resolve().as_uri(), wait_until='load')
            info = page.evaluate("""() => ({
                title: document.querySelector('h1') ? document.querySelector('h1').textContent : '',
                text: document.querySelector('main') ? document.querySelector('main').innerText.length : 0,
                ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
                headings: Array.from(document.querySelectorAll('main h3, main h4')).map(e => e.textContent.trim()),
                badImages: Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src').slice(0, 80)),
                images: document.images.length,
                links: Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href')),
            })""")
            ids[p] = set(info['ids'])
            if not info['title'].strip(): problems.append(f"{p}: no title")
            if info['text'] < 200: problems.append(f"{p}: almost empty ({info['text']} characters)")
            for b in info['badImages']: problems.append(f"{p}: image does not load: {b}")
            for e in errors: problems.append(f"{p}: browser error: {e}")
            for r in requests: problems.append(f"{p}: network request (the offline docs must not need the network): {r}")
            missing = [n for n in api_names(p) if n not in info['headings']]
            if missing: problems.append(f"{p}: API docs missing for {missing}")
            links += [(p, h) for h in info['links']]
        browser.close()
    for p, h in links:
        if h.startswith(('http:', 'https:', 'mailto:')): continue
        target, _, frag = h.partition('#')
        tp = os.path.normpath(str(Path(p).parent / target)).replace('\\', '/') if target else p
        if tp not in ids and not (out / tp).exists(): problems.append(f"{p}: broken link {h}"); continue
        if frag and tp in ids and frag not in ids[tp]: problems.append(f"{p}: broken anchor {h}")
    return problems

def compress_png(data: str) -> str:
    """A figure's PNG (base64, as a notebook stores it) re-encoded with at most 256 colours (no dithering) and zlib's best
    compression: figures of slices and curves lose nothing visible and shrink 2-4x. The original when that is not smaller."""
    import base64, io
    from PIL import Image
    raw = base64.b64decode(data)
    with Image.open(io.BytesIO(raw)) as im:
        q = im.convert('RGB').quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buf = io.BytesIO(); q.save(buf, 'PNG', optimize=True)
    return base64.b64encode(buf.getvalue()).decode() if buf.tell() < len(raw) else data

def keep_output(o, max_png=200_000, max_text=3000):
    "The outputs worth committing for the docs: figures and short prints; not stderr, warnings or widget state."
    t = o.get('output_type')
    if t == 'stream': return o.get('name') == 'stdout' and len(''.join(o['text'])) <= max_text
    if t in ('display_data', 'execute_result'):
        d = o.get('data', {})
        d.pop('application/vnd.jupyter.widget-view+json', None)
        if 'image/png' in d: return len(''.join(d['image/png'])) <= max_png * 4 // 3
        if 'text/markdown' in d or 'text/html' in d: return sum(len(''.join(v)) for v in d.values()) <= max_text
        return len(''.join(d.get('text/plain', ''))) <= max_text
    return False

def save_outputs(nb_path: Path) -> tuple[int, int]:
    "Run `nb_path` with nbdev's test runner (test-flagged cells skipped) and write back the outputs `keep_output` keeps."
    import nbformat, tempfile
    from nbdev.test import test_nb
    from nbdev.config import get_config
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / nb_path.name
        shutil.copy(nb_path, run)
        ok, _ = test_nb(run, skip_flags=get_config().tst_flags.split(), basepath=str(ROOT), save=True)
        if not ok: raise SystemExit(f"{nb_path} failed; outputs not saved")
        ran = nbformat.read(run, as_version=4)
    nb = nbformat.read(nb_path, as_version=4)
    by_id = {c.get('id'): c for c in ran.cells}
    kept = total = 0
    for c in nb.cells:
        if c.cell_type != 'code': continue
        outs = by_id.get(c.get('id'), {}).get('outputs', [])
        total += len(outs)
        for o in outs:
            if 'image/png' in o.get('data', {}): o['data']['image/png'] = compress_png(''.join(o['data']['image/png']))
        c.outputs = [o for o in outs if keep_output(o)]
        kept += len(c.outputs)
    nbformat.write(nb, nb_path)
    return kept, total

def compress_outputs(nb_path: Path) -> tuple[int, int]:
    "Re-encode the PNG outputs `nb_path` holds with `compress_png`, in place: (bytes before, bytes after) of those PNGs."
    import nbformat
    nb = nbformat.read(nb_path, as_version=4)
    before = after = 0
    for c in nb.cells:
        for o in c.get('outputs', []) if c.cell_type == 'code' else ():
            if 'image/png' not in o.get('data', {}): continue
            old = ''.join(o['data']['image/png']); new = compress_png(old)
            before, after = before + len(old), after + len(new); o['data']['image/png'] = new
    nbformat.write(nb, nb_path)
    return before, after

def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('cmd', nargs='?', default='readme', choices=['readme', 'check', 'html', 'check-html', 'outputs', 'compress'])
    ap.add_argument('notebooks', nargs='*')
    ap.add_argument('--out', default=str(ROOT / '_offline_docs'))
    ap.add_argument('--chromium')
    ap.add_argument('--workers', type=int, default=0, help='html: processes for nbdev\'s notebook processing (0: this one, the fastest here)')
    a = ap.parse_args(argv[1:])
    if a.cmd == 'readme': (ROOT / 'README.md').write_text(readme_text()); print('wrote README.md'); return 0
    if a.cmd == 'check':
        ok = (ROOT / 'README.md').exists() and (ROOT / 'README.md').read_text() == readme_text()
        print('README.md is up to date' if ok else 'README.md differs from nbs/index.ipynb: run `python tools/build_docs.py readme`')
        return 0 if ok else 1
    if a.cmd == 'outputs':
        for nb in a.notebooks:
            kept, total = save_outputs(Path(nb).resolve()); print(f"{nb}: kept {kept} of {total} outputs")
        return 0
    if a.cmd == 'compress':
        for nb in a.notebooks:
            b, c = compress_outputs(Path(nb).resolve()); print(f"{nb}: PNG outputs {b // 1024} kB -> {c // 1024} kB (base64)")
        return 0
    if a.cmd == 'html':
        pages = build_html(Path(a.out), workers=a.workers); print(f"wrote {len(pages)} pages to {a.out}", flush=True)
        # Every page was written. Processing left one IPython shell per notebook, and at exit each one resets itself (a garbage
        # collection of the whole heap, about half a second each, ~30 s for all): end the process without those resets.
        sys.stderr.flush(); os._exit(0)
    probs = check_html(Path(a.out), a.chromium)
    for pr in probs: print(pr)
    n = len(list(Path(a.out).rglob('*.html')))
    print(f"{n} pages checked: {'OK' if not probs else f'{len(probs)} problems'}")
    return 1 if probs else 0

if __name__ == '__main__': sys.exit(main(sys.argv))
