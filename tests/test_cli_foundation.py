"""End-to-end tests of the foundation CLIs: prod9-demo and prod9-preprocess, good and bad input."""
import importlib, importlib.metadata, os, shutil, subprocess
import numpy as np, nibabel as nib
from prod9.io import write_nifti
from prod9.phantoms import make_phantom
from conftest import SCRIPTS, ROOT

def test_console_scripts_are_the_entry_functions(tmp_path):
    """The tests call each prod9 script's entry function in-process (conftest.run_cli); here the installed scripts are checked to be
    those functions, and two run as real processes: a good command and a bad one, exit status and output as a shell sees them."""
    installed = {e.name: e.value for e in importlib.metadata.entry_points(group='console_scripts') if e.name.startswith('prod9-')}
    assert installed == SCRIPTS, "the installed console scripts differ from pyproject.toml: run `pip install -e .`"
    for name, target in SCRIPTS.items():
        mod, fn = target.split(':')
        assert shutil.which(name), f"{name} is not on PATH"
        assert callable(getattr(importlib.import_module(mod), fn)), target
    ph = make_phantom((16, 16, 16), 0); write_nifti(ph['T1'], tmp_path / 'ok' / 'a.nii.gz', ph['affine'])
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')]))}
    runs = [subprocess.Popen(a, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for a in (
        ['prod9-preprocess', 'check', str(tmp_path / 'ok')],
        ['prod9-train-autoencoder', 'train', '--config', str(tmp_path / 'missing.yaml')])]
    (good_out, _), (_, bad_err) = [p.communicate(timeout=300) for p in runs]
    assert runs[0].returncode == 0 and '1 file(s): consistent' in good_out, good_out
    assert runs[1].returncode == 1 and 'missing.yaml' in bad_err and 'Traceback' not in bad_err, bad_err

def test_demo_writes_nifti_and_png(cli, tmp_path):
    r = cli('prod9-demo', '--output-dir', tmp_path / 'demo', '--num-cases', '1', '--size', '24', '--data-only')
    assert r.returncode == 0, r.stderr
    ph = make_phantom((24, 24, 24), 0)
    for m in ('T1', 'T1ce', 'T2', 'FLAIR', 'seg'):
        img = nib.load(tmp_path / 'demo' / 'phantoms' / f'phantom_0000_{m}.nii.gz')
        assert img.shape == (24, 24, 24)
        np.testing.assert_allclose(img.affine, ph['affine'])
    np.testing.assert_allclose(nib.load(tmp_path / 'demo/phantoms/phantom_0000_T2.nii.gz').get_fdata(), ph['T2'], atol=1e-6)
    png = tmp_path / 'demo' / 'phantoms' / 'phantom_0000_montage.png'
    assert png.read_bytes()[:4] == b'\x89PNG'

def test_demo_bad_size_exits_nonzero(cli, tmp_path):
    r = cli('prod9-demo', '--output-dir', tmp_path, '--size', '8')
    assert r.returncode == 1 and '--size must be a multiple of 4 and >= 16' in r.stderr and 'got size 8' in r.stderr

def _folder(tmp_path, consistent=True):
    d = tmp_path / ('ok' if consistent else 'mixed')
    ph = make_phantom((20, 20, 16), 0)
    write_nifti(ph['T1'], d / 'a.nii.gz', ph['affine'])
    write_nifti(ph['T2'] if consistent else ph['T2'][:, :, :10], d / 'b.nii.gz', ph['affine'] if consistent else np.diag([2., 2, 2, 1]))
    write_nifti(ph['seg'], d / 'a_seg.nii.gz', ph['affine'])
    return d

def test_preprocess_check(cli, tmp_path):
    r = cli('prod9-preprocess', 'check', _folder(tmp_path))
    assert r.returncode == 0 and '3 file(s): consistent' in r.stdout and 'RAS' in r.stdout
    r = cli('prod9-preprocess', 'check', _folder(tmp_path, False))
    assert r.returncode == 1 and 'INCONSISTENT shapes' in r.stdout and 'INCONSISTENT spacings' in r.stdout

def test_preprocess_check_reports_bad_files(cli, tmp_path):
    d = _folder(tmp_path); (d / 'broken.nii.gz').write_bytes(b'\x1f\x8b' + b'0' * 50)
    r = cli('prod9-preprocess', 'check', d)
    assert r.returncode == 1 and 'broken.nii.gz: is not a readable NIfTI file' in r.stdout
    r = cli('prod9-preprocess', 'check', tmp_path / 'nowhere')
    assert r.returncode == 1 and 'nowhere: not a directory' in r.stderr

def test_preprocess_resample_end_to_end(cli, tmp_path):
    src, out = _folder(tmp_path, False), tmp_path / 'out'
    r = cli('prod9-preprocess', 'resample', src, out, '--target-spacing', '6', '6', '6', '--target-shape', '32', '32', '24')
    assert r.returncode == 0, r.stderr
    assert cli('prod9-preprocess', 'check', out).returncode == 0
    seg = nib.load(out / 'a_seg.nii.gz')
    assert seg.shape == (32, 32, 24) and set(np.unique(seg.get_fdata())) <= {0, 1, 2, 3}
    np.testing.assert_allclose(seg.header.get_zooms(), (6, 6, 6))

def test_preprocess_resample_bad_args(cli, tmp_path):
    src = _folder(tmp_path)
    r = cli('prod9-preprocess', 'resample', src, src, '--target-spacing', '1', '1', '1')
    assert r.returncode == 1 and 'OUT_DIR must differ from IN_DIR' in r.stderr
    r = cli('prod9-preprocess', 'resample', src, tmp_path / 'o', '--target-spacing', '0', '1', '1')
    assert r.returncode == 1 and '--target-spacing must be finite and positive' in r.stderr
    r = cli('prod9-preprocess', 'resample', src, tmp_path / 'o', '--target-spacing', 'a', '1', '1')
    assert r.returncode == 2 and 'invalid float value' in r.stderr

def test_demo_quick_trains_both_pipelines_and_writes_report(cli, tmp_path):
    "The README's main job at smoke-test size: both pipelines, samples as NIfTI, montages, report.html, summary.json."
    import json, re
    out = tmp_path / 'demo'
    r = cli('prod9-demo', '--output-dir', out, '--quick', '--size', '24', '--train-cases', '8', '--num-cases', '1')
    assert r.returncode == 0, r.stderr[-3000:]
    report = (out / 'report.html').read_text()
    assert all((out / src).exists() for src in re.findall(r"src='([^']+)'", report))
    s = json.loads((out / 'summary.json').read_text())
    for pipe in ('maskgit', 'maisi'):       # per modality: NIfTI samples, scored against held-out phantoms, 4 volumes with --quick
        for m in ('T1', 'T1ce', 'T2', 'FLAIR'):
            f = out / pipe / 'samples' / f'sample_0001_{m}.nii.gz'
            img = nib.load(f); assert img.shape == (24, 24, 24)
        assert all(np.isfinite(v) for v in s[pipe]['metrics'].values() if isinstance(v, float))
        q = s[pipe]['quality']
        assert [r['modality'] for r in q] == ['T1', 'T1ce', 'T2', 'FLAIR'] and all(np.isfinite(r['FD generated / oracle']) for r in q)
        assert len(list((out / pipe / 'samples').glob('sample_*_FLAIR.nii.gz'))) == 4
    assert len(re.findall(r"src='([^']+)'", report)) == 1 + 2 + 1                   # the phantom montage, real beside generated per pipeline, MAISI's ControlNet
    cn = s['maisi']['controlnet']                              # stage 3: a FLAIR volume for each held-out phantom's tumour mask
    assert len(list((out / 'maisi' / 'samples').glob('controlnet_*_FLAIR.nii.gz'))) == 4 and cn['metrics']['ControlNet training steps'] > 0
    assert all(np.isfinite(v) for v in cn['metrics'].values() if isinstance(v, float))
    assert 'autoencoder held-out PSNR (dB)' in s['maskgit']['metrics'] and 'VAE held-out PSNR (dB)' in s['maisi']['metrics']
