"""Faults found by a probe of every console script (issue 22), reproduced: each is exit 1 with one line on stderr that names the
file, key or flag and what was expected, no traceback, and nothing lost. Two property-based tests (hypothesis) drive bad config
values and bad NIfTI headers through the commands and check that every failure is such a line."""
import errno, json, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path
from unittest import mock
import numpy as np, nibabel as nib, torch
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from safetensors.torch import save_file, load_file
from prod9.io import write_nifti, _HOST
from prod9.phantoms import make_phantom
from prod9.training.engine import RunLock
from prod9.cli import autoencoder
from prod9 import preprocess

TINY = """
seed: 0
output_dir: {out}
export_path: {out}/autoencoder.safetensors
data: {{source: phantoms, num_cases: 4, shape: [16, 16, 16], roi_size: [16, 16, 16], batch_size: 4, val_fraction: 0.25, test_fraction: 0.25}}
model: {{channels: [8, 8], levels: [5, 5, 5]}}
sliding_window: {{roi_size: [16, 16, 16], overlap: 0.25}}
trainer: {{max_epochs: 1, enable_progress_bar: false, log_every_n_steps: 1, loggers: [csv]}}
"""

def one_line_error(r, *want) -> str:
    "The run failed with exit 1 and exactly one line on stderr, containing every string of `want`."
    assert r.returncode == 1, (r.returncode, r.stdout[-1000:], r.stderr[-3000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in r.stderr, r.stderr[-3000:]
    for w in want: assert str(w) in lines[0], (w, lines[0])
    return lines[0]

def config(d, text=TINY, **fmt) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / 'cfg.yaml'; p.write_text(text.format(out=d / 'run', **fmt)); return p

@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    "One tiny stage-1 run (umask 022): its config, output folder, checkpoints and export."
    d = tmp_path_factory.mktemp('faults')
    old = os.umask(0o022)
    try:
        from conftest import run_cli
        c = config(d)
        r = run_cli('prod9-train-autoencoder', 'train', '--config', c); assert r.returncode == 0, r.stderr[-3000:]
    finally: os.umask(old)
    ph = make_phantom((20, 20, 16), 3); write_nifti(ph['T1'], d / 'in.nii.gz', ph['affine'])
    return {'cfg': c, 'run': d / 'run', 'export': d / 'run' / 'autoencoder.safetensors', 'input': d / 'in.nii.gz', 'dir': d}

# 2 -------------------------------------------------------------------------------------------------------------------------
def test_second_run_in_the_same_output_dir_is_refused(cli, trained):
    before = {p.name: p.read_bytes() for p in trained['run'].glob('*.ckpt')}
    r = cli('prod9-train-autoencoder', 'train', '--config', trained['cfg'])          # a finished run: refused, names --resume/--overwrite
    one_line_error(r, trained['run'], 'already holds a training run', '--resume', '--overwrite')
    with RunLock(trained['run']):           # a run in progress: not even --overwrite touches its checkpoints
        r = cli('prod9-train-autoencoder', 'train', '--config', trained['cfg'], '--overwrite')
    one_line_error(r, trained['run'] / '.prod9.lock', 'another prod9 run is training into this output_dir', '--output-dir')
    assert {p.name: p.read_bytes() for p in trained['run'].glob('*.ckpt')} == before
    assert not (trained['run'] / '.prod9.lock').exists()

# 4 -------------------------------------------------------------------------------------------------------------------------
def _liar(path, shape):
    "A valid 1-voxel NIfTI whose header then claims `shape`."
    nib.save(nib.Nifti1Image(np.zeros((1, 1, 1), np.float32), np.eye(4)), path)
    hdr = nib.Nifti1Header(); hdr.set_data_shape(shape)
    raw = path.read_bytes(); path.write_bytes(raw[:40] + hdr.binaryblock[40:56] + raw[56:])
    return path

def test_header_that_lies_about_its_size(cli, trained, tmp_path):
    d = tmp_path / 'scans'; d.mkdir(); _liar(d / 'liar.nii', (1000, 1000, 500))
    code = ("import resource, sys; from prod9.preprocess import main; rc = main(['check', sys.argv[1]]); "
            "print('maxrss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
    start = lambda folder: subprocess.Popen([sys.executable, '-c', code, str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                            cwd=Path(__file__).parent.parent)
    done = lambda p: (lambda out, err: subprocess.CompletedProcess(p.args, p.returncode, out, err))(*p.communicate(timeout=300))
    ok = tmp_path / 'ok'; ph = make_phantom((16, 16, 16), 0); write_nifti(ph['T1'], ok / 'a.nii.gz', ph['affine'])
    base, r = start(ok), start(d)                     # the same command on a good 16^3 file: the imports' memory (both at once)
    base, r = done(base), done(r)
    assert base.returncode == 0, base.stdout + base.stderr
    assert r.returncode == 1 and 'liar.nii: the file is truncated or corrupt: its header says shape 1000x1000x500' in r.stdout, r.stdout + r.stderr
    rss = lambda p: int(p.stdout.split('maxrss_kb')[1])
    assert rss(r) < rss(base) + 200_000, (rss(r), rss(base))     # the 2 GB the header promises are never allocated
    big = _liar(tmp_path / 'huge.nii', (32767, 32767, 32767))
    r = cli('prod9-train-autoencoder', 'infer', '--config', trained['cfg'], '--checkpoint', trained['export'], '--input', big, '--output', tmp_path / 'o.nii.gz')
    one_line_error(r, 'huge.nii: the file is truncated or corrupt', '32767x32767x32767')

# 5 -------------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('text,want', [
    ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)),
     'aliases expand to more than 100,000 values'),
    ("seed: &s [1, *s]\n", 'recursive alias'),
    ("seed: 1\nseed: 2\n", "duplicate key 'seed' (first set on line 1)"),
    ("data: {source: phantoms, roi_size: [0, 0, 0]}\n", 'data.roi_size[0]: Input should be greater than or equal to 1'),
    ("model: {channels: []}\n", 'model.channels: List should have at least 1 item'),
])
def test_config_faults_are_one_line(cli, tmp_path, text, want):
    p = tmp_path / 'bad.yaml'; p.write_text(text)
    t = time.perf_counter()
    one_line_error(cli('prod9-train-autoencoder', 'train', '--config', p), p, want)
    assert time.perf_counter() - t < 30

# 6 -------------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('meta,want', [
    ({'prod9_class': 'AutoencoderFSQ'}, 'without its model configuration'),
    ({'prod9_class': 'AutoencoderFSQ', 'prod9_config': '{"channels": [8, 8'}, 'prod9_config metadata is not valid JSON'),
    ({'prod9_class': 'AutoencoderFSQ', 'prod9_config': '"channels"'}, 'prod9_config metadata is a str, expected a mapping'),
    ({'prod9_class': 'AutoencoderFSQ', 'prod9_config': '{"channels": [8, 8], "levels": [5, 5, 5, 5]}'}, 'does not match its weights'),
    ({'prod9_class': 'AutoencoderFSQ', 'prod9_config': '{"channels": [200000, 200000], "levels": [5, 5, 5]}'}, 'the configuration says (200000'),
    ({'prod9_class': 'AutoencoderFSQ', 'prod9_config': '{"channels": [8, 8], "levels": [1]}'}, 'stored configuration does not rebuild a model'),
])
def test_tampered_export(cli, trained, tmp_path, meta, want):
    bad = tmp_path / 'tampered.safetensors'
    save_file(load_file(str(trained['export'])), str(bad), metadata=meta)
    r = cli('prod9-train-autoencoder', 'infer', '--config', trained['cfg'], '--checkpoint', bad, '--input', trained['input'], '--output', tmp_path / 'o.nii.gz')
    one_line_error(r, bad, want)
    assert not (tmp_path / 'o.nii.gz').exists()

# 7 -------------------------------------------------------------------------------------------------------------------------
def test_outputs_get_the_umask_permissions(cli, trained, tmp_path):
    for f in ('best.ckpt', 'last.ckpt', 'autoencoder.safetensors'):
        assert (trained['run'] / f).stat().st_mode & 0o777 == 0o644, f
    old = os.umask(0o002)
    try: r = cli('prod9-train-autoencoder', 'infer', '--config', trained['cfg'], '--checkpoint', trained['export'], '--input', trained['input'], '--output', tmp_path / 'o.nii.gz')
    finally: os.umask(old)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / 'o.nii.gz').stat().st_mode & 0o777 == 0o664

# 8 -------------------------------------------------------------------------------------------------------------------------
def test_os_errors_are_one_line(cli, trained, tmp_path, capsys):
    (tmp_path / 'taken').mkdir()
    r = cli('prod9-train-autoencoder', 'infer', '--config', trained['cfg'], '--checkpoint', trained['export'], '--input', trained['input'], '--output', tmp_path / 'taken')
    one_line_error(r, tmp_path / 'taken', 'is a folder; give a file name')
    assert not [p for p in (tmp_path).iterdir() if p.name.startswith('.')], 'no temporary file left'
    (tmp_path / 'file').write_text('x')
    r = cli('prod9-train-autoencoder', 'infer', '--config', trained['cfg'], '--checkpoint', trained['export'], '--input', trained['input'], '--output', tmp_path / 'file' / 'o.nii.gz')
    one_line_error(r, tmp_path / 'file', 'is a file, not a folder')
    r = cli('prod9-train-autoencoder', 'train', '--config', trained['cfg'], '--output-dir', tmp_path / 'file')
    one_line_error(r, tmp_path / 'file', 'is a file, not a folder')
    # what the system says, in one line with the file: no permission, a read-only file system, a full disk (torch: "unexpected pos")
    args = ['infer', '--config', str(trained['cfg']), '--checkpoint', str(trained['export']), '--input', str(trained['input']), '--output', str(tmp_path / 'o.nii.gz')]
    for exc, want in ((PermissionError(errno.EACCES, 'Permission denied', str(tmp_path / 'o.nii.gz')), 'Permission denied (no permission)'),
                      (OSError(errno.EROFS, 'Read-only file system', str(tmp_path / 'o.nii.gz')), 'Read-only file system (read-only file system')):
        with mock.patch('os.replace', side_effect=exc): assert autoencoder.main(args) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and want in err[0] and str(tmp_path / 'o.nii.gz') in err[0], err
    good = (trained['run'] / 'last.ckpt').read_bytes()
    full = shutil._ntuple_diskusage(10**9, 10**9 - 10**5, 10**5)
    with mock.patch('torch.save', side_effect=RuntimeError('[enforce fail at inline_container.cc:595] . unexpected pos 375616 vs 375508')), \
         mock.patch('shutil.disk_usage', return_value=full):
        rc = autoencoder.main(['train', '--config', str(trained['cfg']), '--set', 'trainer.max_epochs=2', '--checkpoint', str(trained['run'] / 'last.ckpt')])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and 'No space left on device' in err[0] and 'disk full' in err[0], err
    assert (trained['run'] / 'last.ckpt').read_bytes() == good          # the last good checkpoint is intact
    assert not (trained['run'] / '.prod9.lock').exists()

# 9 -------------------------------------------------------------------------------------------------------------------------
class _Evil:
    def __reduce__(self): return (os.system, (f'touch {os.environ.get("PROD9_PWNED", "/tmp/prod9_pwned")}',))

def test_resume_reads_safely(cli, trained, tmp_path):
    pwned = tmp_path / 'pwned'
    trunc = tmp_path / 'trunc.ckpt'; b = (trained['run'] / 'last.ckpt').read_bytes(); trunc.write_bytes(b[:len(b) // 2])
    evil = tmp_path / 'evil.ckpt'
    with mock.patch.dict(os.environ, {'PROD9_PWNED': str(pwned)}): torch.save({'state_dict': {}, 'x': _Evil()}, evil)
    for f, want in ((trunc, 'not a readable Lightning checkpoint'), (evil, 'not a readable Lightning checkpoint'), (trained['export'], None)):
        r = cli('prod9-train-autoencoder', 'train', '--config', trained['cfg'], '--checkpoint', f, '--output-dir', tmp_path / 'resume')
        if want is None: assert r.returncode == 0, r.stderr[-2000:]; continue     # an export given to train: its weights start the run
        line = one_line_error(r, f, want)
        assert 'weights_only=False' not in line
    assert not pwned.exists()

def test_wrong_stage1_for_stage2(cli, tmp_path):
    "A MAISI VAE export as the transformer's autoencoder_path (was KeyError: 'tokens')."
    from prod9.autoencoder.autoencoder_maisi import MAISIVAEModelConfig, MAISIVAE
    from prod9.training.maisi_vae import export_vae
    v = MAISIVAEModelConfig(num_channels=[8, 8], norm_num_groups=8, num_res_blocks=1)
    vae = export_vae(MAISIVAE(**v.model_dump()), v, tmp_path / 'vae.safetensors')
    c = tmp_path / 's2.yaml'
    c.write_text(f"autoencoder_path: {vae}\noutput_dir: {tmp_path / 'run'}\ndata: {{source: phantoms, num_cases: 4, shape: [16, 16, 16], roi_size: [16, 16, 16]}}\n")
    one_line_error(cli('prod9-train-transformer', 'train', '--config', c), c, 'autoencoder_path', vae, 'is a MAISI VAE export, not an FSQ autoencoder export')

# 10 ------------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('cmd,flags,want', [
    ('prod9-train-autoencoder', ['infer', '--roi-size', '0', '0', '0'], '--roi-size must be one to three sizes, each >= 1, got 0 0 0'),
    ('prod9-train-autoencoder', ['infer', '--overlap', '1.5'], '--overlap must be a fraction in [0, 1), got 1.5'),
    ('prod9-train-autoencoder', ['infer', '--sw-batch-size', '0'], '--sw-batch-size must be an integer >= 1, got 0'),
    ('prod9-train-maisi-diffusion', ['generate', '--num-inference-steps', '0'], '--num-inference-steps must be an integer >= 1, got 0'),
    ('prod9-train-maisi-diffusion', ['generate', '--num-samples', '0'], '--num-samples must be an integer >= 1, got 0'),
    ('prod9-train-transformer', ['generate', '--steps', '-1'], '--steps must be an integer >= 1, got -1'),
    ('prod9-train-transformer', ['generate', '--guidance-scale', 'nan'], '--guidance-scale must be a finite number, got nan'),
])
def test_flag_checks(cli, trained, tmp_path, cmd, flags, want):
    cfg = {'prod9-train-autoencoder': trained['cfg'], 'prod9-train-maisi-diffusion': 'maisi/phantoms/diffusion.yaml',
           'prod9-train-transformer': 'maskgit/phantoms/stage2/base.yaml'}[cmd]
    one_line_error(cli(cmd, flags[0], '--config', cfg, '--checkpoint', trained['export'], '--input', trained['input'], '--output', tmp_path / 'o', *flags[1:])
                   if cmd == 'prod9-train-autoencoder' else cli(cmd, *flags[:1], '--config', cfg, '--checkpoint', tmp_path / 'x.ckpt', '--output', tmp_path / 'o', *flags[1:]), want)

def test_huge_learning_rate_is_named(cli, trained, tmp_path):
    r = cli('prod9-train-autoencoder', 'train', '--config', trained['cfg'], '--set', 'training.lr=1e30', '--set', 'trainer.max_epochs=3',
            '--output-dir', tmp_path / 'lr')
    one_line_error(r, 'lower training.lr')

def test_output_dir_is_a_folder_name(cli, trained, tmp_path):
    for name in ('2024', 'yes', 'null'):
        r = cli('prod9-train-autoencoder', 'train', '--config', trained['cfg'], '--output-dir', name, '--print-config')
        assert r.returncode == 0 and f"output_dir: '{name}'" in r.stdout, r.stdout[-500:] + r.stderr[-500:]

# 11 ------------------------------------------------------------------------------------------------------------------------
def test_check_reports_what_it_cannot_read(cli, tmp_path):
    ph = make_phantom((16, 16, 16), 0)
    write_nifti(ph['T1'], tmp_path / 'a.nii.gz', ph['affine']); write_nifti(ph['T2'], tmp_path / 'b.nii.gz', ph['affine'])
    gone = subprocess.Popen(['true']); gone.wait()
    (tmp_path / f'.c.nii.gz.prod9-{gone.pid}@{_HOST}.x1.nii.gz').write_bytes(b'')   # what a killed generate leaves
    r = cli('prod9-preprocess', 'check', tmp_path); assert r.returncode == 0 and '2 file(s): consistent' in r.stdout, r.stdout
    write_nifti(ph['T1'], tmp_path / 'c.nii.gz', ph['affine'])                       # the next write of that file removes it
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a.nii.gz', 'b.nii.gz', 'c.nii.gz']
    (tmp_path / 'd.nii.gz').symlink_to(tmp_path / 'missing.nii.gz'); (tmp_path / 'e.nii.gz').symlink_to(tmp_path / 'e.nii.gz')
    (tmp_path / 'f.nii.gz').mkdir()
    r = cli('prod9-preprocess', 'check', tmp_path)
    assert r.returncode == 1 and 'NOT consistent' in r.stdout and 'consistent\n' not in r.stdout.replace('NOT consistent', '')
    for n in ('d.nii.gz: a symbolic link', 'e.nii.gz: a symbolic link', 'f.nii.gz: a folder, not a volume file'): assert n in r.stdout, r.stdout
    r = cli('prod9-preprocess', 'resample', tmp_path, tmp_path.parent / 'resampled', '--target-spacing', '2', '2', '2')
    one_line_error(r, "3 entries with a volume's name cannot be read")

# 12 ------------------------------------------------------------------------------------------------------------------------
def test_packaged_tensorboard_configs_run_without_tensorboard(tmp_path, capsys):
    "The packaged BraTS and MedMNIST configs name the TensorBoard logger; without tensorboard installed they log CSV and say so."
    from prod9.config import load_config, config_path
    from prod9.training.engine import make_trainer
    from prod9.training.autoencoder_fsq import AutoencoderStageConfig
    cfg = load_config(config_path('maskgit/brats/stage1/base.yaml'), AutoencoderStageConfig, env={'BRATS_DATA_DIR': str(tmp_path)})
    assert 'tensorboard' in cfg.trainer.loggers
    real = __import__('importlib').util.find_spec
    with mock.patch('importlib.util.find_spec', side_effect=lambda n, *a: None if n.startswith('tensorboard') else real(n, *a)):
        t = make_trainer(cfg, tmp_path / 'run')
    assert [type(l).__name__ for l in t.loggers] == ['CSVLogger'] and 'pip install tensorboard' in capsys.readouterr().err

# property-based --------------------------------------------------------------------------------------------------------------
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 40), st.sampled_from([0.0, -1.0, 1e30, float('nan'), float('inf'), 0.5, 1.5]),
                   st.sampled_from(['', 'x', '2024', '${NOPE}', '[1', '{a: 1}']), st.lists(st.integers(-2, 20), max_size=4),
                   st.dictionaries(st.sampled_from(['a', 'weight', 'lr']), st.integers(-1, 3), max_size=2))
KEYS = ['model.channels', 'model.levels', 'model.num_res_blocks', 'model.norm_num_groups', 'model.latent_channels', 'data.roi_size', 'data.shape',
        'data.batch_size', 'data.num_cases', 'data.val_fraction', 'training.lr', 'training.warmup_steps', 'training.betas', 'loss.l1_weight',
        'loss.focal_frequency', 'sliding_window.roi_size', 'sliding_window.overlap', 'sliding_window.mode', 'trainer.max_steps',
        'trainer.precision', 'trainer.log_every_n_steps', 'seed', 'output_dir', 'data']

@settings(max_examples=int(os.environ.get('PROD9_HYPOTHESIS_EXAMPLES', 30)), deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(key=st.sampled_from(KEYS), value=VALUES)
def test_property_bad_config_values(tmp_path, capsys, monkeypatch, key, value):
    "Any value at any of these keys: the run trains (two steps) or fails with one line and exit 1."
    monkeypatch.chdir(tmp_path)                 # a relative output_dir (`--set output_dir=NaN`) lands here
    out = Path(tempfile.mkdtemp(dir=tmp_path)) / 'run'
    text = TINY.format(out=out).replace('max_epochs: 1,', 'max_epochs: 1, max_steps: 2, limit_val_batches: 1,')
    (tmp_path / 'cfg.yaml').write_text(text)
    rc = autoencoder.main(['train', '--config', str(tmp_path / 'cfg.yaml'), '--set', f'{key}={json.dumps(value)}'])
    err = capsys.readouterr().err.strip().splitlines()
    if rc != 0:
        assert rc == 1 and len(err) == 1 and err[0].startswith('prod9-train-autoencoder: error: '), (key, value, err[-20:])

def _nifti_bytes(shape, dtype_code, vox_offset, pixdim, scl, cut):
    raw = bytearray(nib.Nifti1Image(np.ones((2, 2, 2), np.float32), np.eye(4)).to_bytes())
    h = nib.Nifti1Header.from_fileobj(__import__('io').BytesIO(bytes(raw[:348])))
    h['dim'][:] = [len(shape), *shape, *[1] * (7 - len(shape))]
    h['datatype'] = dtype_code; h['bitpix'] = {2: 8, 4: 16, 8: 32, 16: 32, 64: 64, 256: 8, 512: 16, 768: 32, 32: 64, 128: 24, 1: 1}.get(dtype_code, 32)
    h['vox_offset'] = vox_offset; h['pixdim'][1:4] = pixdim; h['scl_slope'], h['scl_inter'] = scl
    data = bytes(h.binaryblock) + bytes(raw[348:])
    return data[:cut] if cut is not None else data

@settings(max_examples=int(os.environ.get('PROD9_HYPOTHESIS_EXAMPLES', 60)), deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.lists(st.integers(0, 32767), min_size=1, max_size=5), dtype_code=st.sampled_from([2, 4, 8, 16, 64, 256, 512, 768, 32, 128, 1, 0, 999]),
       vox_offset=st.sampled_from([0, 352, 353, 10**6, -5]), pixdim=st.tuples(*[st.sampled_from([1.0, 0.0, -2.0, float('nan'), 1e30])] * 3),
       scl=st.tuples(st.sampled_from([0.0, 1.0, float('nan'), float('inf')]), st.sampled_from([0.0, 5.0])), cut=st.one_of(st.none(), st.integers(0, 400)),
       gz=st.booleans())
def test_property_bad_nifti_headers(tmp_path, capsys, shape, dtype_code, vox_offset, pixdim, scl, cut, gz):
    "Any header: `prod9-preprocess check` reports the file (exit 0 or 1, no traceback), and reading it is a located `VolumeError` or a volume."
    import gzip as _gz
    from prod9.io import read_volume, VolumeError
    d = Path(tempfile.mkdtemp(dir=tmp_path))
    data = _nifti_bytes(shape, dtype_code, vox_offset, pixdim, scl, cut)
    f = d / ('x.nii.gz' if gz else 'x.nii'); f.write_bytes(_gz.compress(data) if gz else data)
    rc = preprocess.main(['check', str(d)])
    cap = capsys.readouterr()
    assert rc in (0, 1) and 'Traceback' not in cap.out + cap.err, cap
    if rc == 1: assert 'x.nii' in cap.out or 'x.nii' in cap.err
    try: read_volume(f)
    except VolumeError as e: assert str(e).startswith(str(f)) and '\n' not in str(e)
    except FileNotFoundError: pass

def test_skipped_browser_tests_are_named(tmp_path):
    "Without Chromium (and without PROD9_BROWSER_TESTS=1) the browser tests are skipped, and the end of the run names each one."
    py = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if k not in ('PROD9_BROWSER_TESTS', 'PROD9_CHROMIUM')}
    env['PATH'] = str(py)                                       # python, and no chromium
    r = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', 'tests/test_jupyterlab.py'], cwd=Path(__file__).parent.parent,
                       env=env, capture_output=True, text=True, timeout=300)
    if shutil.which('chromium', path=str(py)): pytest.skip('chromium sits beside python here')
    assert r.returncode == 0 and '1 browser test(s) SKIPPED' in r.stdout and 'SKIPPED tests/test_jupyterlab.py::test_viewers_in_jupyterlab' in r.stdout, r.stdout[-2000:]
    assert 'bash tools/install_chromium.sh' in r.stdout
