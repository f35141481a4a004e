import importlib.util, os, shutil, sys, subprocess
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))      # this checkout's prod9, also for in-process runs

def _scripts() -> dict:
    "Console script name → `module:function`, from pyproject.toml."
    import tomllib
    return tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']['scripts']

SCRIPTS = _scripts()

def _in_process(name, args, cwd=None, env=None):
    "Run console script `name`'s entry function in this process, as the script would run: exit status, stdout and stderr captured."
    import contextlib, io, importlib, traceback
    mod, fn = SCRIPTS[name].split(':')
    main = getattr(importlib.import_module(mod), fn)
    out, err = io.StringIO(), io.StringIO()
    old_env, old_cwd, old_argv = dict(os.environ), os.getcwd(), sys.argv
    try:
        os.environ.update({k: str(v) for k, v in (env or {}).items()})
        if cwd: os.chdir(cwd)
        sys.argv = [name, *args]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try: rc = main(list(args))
            except SystemExit as e: rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException: traceback.print_exc(); rc = 1          # as an uncaught exception ends a process
    finally:
        os.environ.clear(); os.environ.update(old_env); os.chdir(old_cwd); sys.argv = old_argv
        cache = sys.modules.get('prod9.training.cache')          # the OS locks a process holds end with it: the cache folders it read
        for f in (cache._IN_USE.values() if cache else ()): f.close()
        if cache: cache._IN_USE.clear()
    return subprocess.CompletedProcess([name, *args], rc or 0, out.getvalue(), err.getvalue())

def run_cli(*args, cwd=None, env=None, timeout=600):
    """Run a console script; returns CompletedProcess with text stdout/stderr. A prod9 script's entry function is called in this
    process, which saves the ~8 s that importing torch, MONAI and Lightning costs each process; `tests/test_cli_foundation.py::
    test_console_scripts_are_the_entry_functions` checks that each installed script is that function and runs two as real processes.
    Other programs, and every run with PROD9_CLI_SUBPROCESS=1, are real processes (importing this checkout's prod9 through PYTHONPATH)."""
    args = list(map(str, args))
    if args[0] in SCRIPTS and not os.environ.get('PROD9_CLI_SUBPROCESS'):
        return _in_process(args[0], args[1:], cwd, env)
    e = {**os.environ, 'PYTHONPATH': os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')])), **(env or {})}
    return subprocess.run(args, cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout)

@pytest.fixture
def cli(): return run_cli

def evaluate_and_generate(script, cfg, checkpoint, keys, out, *flags, files, volume):
    """`validate` and `test` `checkpoint` (each must print its metric in `keys`), then `generate` three times into `out`/a, b, c with
    seeds 5, 5 and 6: each run must write exactly `files`. Returns the three runs' `volume` files (two samples each) as arrays."""
    import numpy as np, nibabel as nib
    for cmd, key in zip(('validate', 'test'), keys):
        r = run_cli(script, cmd, '--config', cfg, '--checkpoint', checkpoint); assert r.returncode == 0, r.stderr[-3000:]
        assert key in r.stdout
    outs = {}
    for name, seed in (('a', 5), ('b', 5), ('c', 6)):
        r = run_cli(script, 'generate', '--config', cfg, '--checkpoint', checkpoint, '--output', out / name, '--num-samples', 2, *flags, '--seed', seed)
        assert r.returncode == 0, r.stderr[-3000:]
        assert sorted(q.name for q in (out / name).iterdir()) == sorted(files)
        outs[name] = np.stack([nib.load(out / name / volume.format(i=i)).get_fdata() for i in (1, 2)])
    return outs

def browser_missing(*modules) -> list:
    "What the headless-Chromium checks lack here: Python `modules` and Debian's chromium (or PROD9_CHROMIUM)."
    missing = [n for n in modules if importlib.util.find_spec(n) is None]
    if not (shutil.which('chromium') or os.environ.get('PROD9_CHROMIUM')): missing.append('chromium')
    return missing

def needs_browser(*modules):
    """Skip when the browser tools are missing, unless PROD9_BROWSER_TESTS=1 (as `.ci/run` sets): then the test runs and fails
    on what is missing. Returns (pytest mark, list of what is missing)."""
    missing = browser_missing(*modules)
    required = os.environ.get('PROD9_BROWSER_TESTS') == '1'
    reason = f"browser test: needs {', '.join(missing)}; `bash tools/install_chromium.sh` and `pip install -e '.[browser]'`"
    return pytest.mark.skipif(bool(missing) and not required, reason=reason), missing

def pytest_terminal_summary(terminalreporter):
    "Name every skipped browser test at the end of the run, so a run without Chromium cannot pass for a full one."
    skipped = [r.nodeid for r in terminalreporter.stats.get('skipped', []) if 'browser test: needs' in str(getattr(r, 'longrepr', ''))]
    if skipped:
        terminalreporter.write_sep('=', f"{len(skipped)} browser test(s) SKIPPED", yellow=True)
        for n in skipped: terminalreporter.write_line(f"SKIPPED {n}")
        terminalreporter.write_line("install them with `bash tools/install_chromium.sh` (Debian/Ubuntu; sudo when not root) and `pip install -e '.[browser]'`")
