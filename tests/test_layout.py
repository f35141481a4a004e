"""The package layout holds: the two pipelines stand on shared rooms and neither imports the other's modules (at module level or
inside functions), and no import cycle exists at any level (an import inside a function closes a cycle too). Read from the source
with `ast`, so nothing is imported."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / 'prod9'
from prod9.stages import pipeline_modules, STAGES     # the declarations only: prod9.stages imports nothing of prod9

PIPELINES = pipeline_modules()          # each pipeline's modules, as its stages declare them

def modules() -> dict:
    return {'.'.join(p.relative_to(PKG).with_suffix('').parts): p for p in PKG.rglob('*.py') if p.name not in ('__init__.py', '_modidx.py')}

def imports(name:str, path:Path, top_level_only:bool) -> set:
    "prod9 modules that `name` imports (resolved relative imports)."
    tree, out = ast.parse(path.read_text()), set()
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    pkg = name.split('.')[:-1]
    for n in nodes:
        if isinstance(n, ast.ImportFrom):
            if n.level: base = '.'.join(pkg[:len(pkg) - n.level + 1] + ([n.module] if n.module else []))
            elif (n.module or '').startswith('prod9.'): base = n.module[len('prod9.'):]
            else: continue
            out.add(base)
        elif isinstance(n, ast.Import):
            out |= {a.name[len('prod9.'):] for a in n.names if a.name.startswith('prod9.')}
    return {m for m in out if m in modules()}

def side(m:str):
    "The pipeline that owns module `m` (a declared module, or a module of a declared package such as `generator.`), or None: shared."
    for name, mods in PIPELINES.items():
        if any(m == d or (d.endswith('.') and m.startswith(d)) for d in mods): return name

def test_pipelines_do_not_import_each_other():
    bad = [f"{m} ({side(m)}) imports {d} ({side(d)})" for m, p in modules().items() for d in imports(m, p, False)
           if side(m) and side(d) and side(m) != side(d)]
    assert not bad, bad
    assert {side(m) for m in modules()} >= {'maskgit', 'maisi', None}

def test_declared_modules_exist_and_shared_modules_stay_shared():
    """Every module a stage declares exists; a module no stage declares is shared, and a shared module imports no pipeline's module
    at module level (a pipeline module left out of its stage's declaration shows up here, instead of silently counting as shared).
    The front doors that dispatch to both pipelines on demand (the demo, the loader) import them inside functions only."""
    mods = modules()
    missing = [d for ds in PIPELINES.values() for d in ds if not (d in mods or (d.endswith('.') and any(m.startswith(d) for m in mods)))]
    assert not missing, missing
    bad = [f"{m} (shared) imports {d} ({side(d)}) at module level" for m, p in mods.items() if side(m) is None
           for d in imports(m, p, True) if side(d)]
    assert not bad, bad
    assert {s.script for s in STAGES.values()} >= {'prod9-train-autoencoder', 'prod9-train-maisi-controlnet'}

def test_no_import_cycle():
    graph = {m: imports(m, p, False) for m, p in modules().items()}          # imports inside functions included
    state, cycles = {}, []
    def visit(m, stack):
        state[m] = 'open'
        for d in graph[m]:
            if state.get(d) == 'open': cycles.append(stack[stack.index(d):] + [d])
            elif d not in state: visit(d, stack + [d])
        state[m] = 'done'
    for m in graph:
        if m not in state: visit(m, [m])
    assert not cycles, cycles
