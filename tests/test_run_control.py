"""Run control from the command line (issue 20): a rerun never silently replaces a run (--resume / --overwrite), `lr-find` for every
trainable stage, and `infer` in the input's intensity units with its header."""
import numpy as np, nibabel as nib, torch
import pytest
from prod9.phantoms import make_phantom
from test_cli_autoencoder import TINY
from test_cli_transformer import write_cfg, ae_path  # noqa: F401  (module fixture)

@pytest.fixture
def c(tmp_path):
    p = tmp_path / 'tiny.yaml'; p.write_text(TINY.format(out=tmp_path / 'run', epochs=1)); return p

def step(path): return torch.load(path, weights_only=True)['global_step']

def test_rerun_is_refused_unless_resume_or_overwrite(cli, c, tmp_path):
    run = tmp_path / 'run'
    r = cli('prod9-train-autoencoder', 'train', '--config', c); assert r.returncode == 0, r.stderr[-3000:]
    s1, best = step(run / 'last.ckpt'), (run / 'best.ckpt').read_bytes()
    r = cli('prod9-train-autoencoder', 'train', '--config', c)
    assert r.returncode == 1 and 'already holds a training run (best.ckpt, last.ckpt)' in r.stderr
    assert '--resume' in r.stderr and '--overwrite' in r.stderr and (run / 'best.ckpt').read_bytes() == best     # nothing touched
    r = cli('prod9-train-autoencoder', 'train', '--config', c, '--resume', '--overwrite')
    assert r.returncode == 1 and '--resume and --overwrite exclude each other' in r.stderr
    # --resume continues from last.ckpt: one more epoch on top of the first
    r = cli('prod9-train-autoencoder', 'train', '--config', c, '--resume', '--set', 'trainer.max_epochs=2'); assert r.returncode == 0, r.stderr[-3000:]
    assert step(run / 'last.ckpt') == 2 * s1
    # --overwrite starts a new run: its step count starts from 0 again
    r = cli('prod9-train-autoencoder', 'train', '--config', c, '--overwrite'); assert r.returncode == 0, r.stderr[-3000:]
    assert 'deleted the 2 checkpoint(s) of the earlier run' in r.stdout and step(run / 'last.ckpt') == s1
    r = cli('prod9-train-autoencoder', 'train', '--config', c, '--resume', '--output-dir', tmp_path / 'empty')
    assert r.returncode == 1 and 'there is no run to continue' in r.stderr

def test_lr_find_stage1_writes_plot_and_suggestion(cli, c, tmp_path):
    r = cli('prod9-train-autoencoder', 'lr-find', '--config', c, '--lr-steps', 12, '--min-lr', 1e-5, '--max-lr', 0.1,
            '--set', 'loss.adversarial.weight=0.1')
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'adversarial term off' in r.stdout and '12 steps from 1e-05' in r.stdout
    assert 'suggested training.lr' in r.stdout or 'no suggestion' in r.stdout
    d = tmp_path / 'run' / 'lr_find'
    assert (d / 'lr_find.png').stat().st_size > 1000 and len((d / 'lr_find.csv').read_text().splitlines()) == 13
    assert not list((tmp_path / 'run').glob('*.ckpt'))                   # a search, not a run: no checkpoints
    r = cli('prod9-train-autoencoder', 'lr-find', '--config', c, '--min-lr', 1, '--max-lr', 0.1)
    assert r.returncode == 1 and '--min-lr 1 must be below --max-lr 0.1' in r.stderr

def test_lr_find_stage2(cli, tmp_path, ae_path):
    cfg = write_cfg(tmp_path, ae_path)
    r = cli('prod9-train-transformer', 'lr-find', '--config', cfg, '--lr-steps', 8); assert r.returncode == 0, r.stderr[-3000:]
    assert len((tmp_path / 'label' / 'lr_find' / 'lr_find.csv').read_text().splitlines()) == 9

def test_infer_writes_the_input_units_and_header(cli, c, tmp_path):
    r = cli('prod9-train-autoencoder', 'train', '--config', c); assert r.returncode == 0, r.stderr[-3000:]
    ph = make_phantom((24, 20, 16), 3)
    data = np.round(ph['T1'] * 2544).astype(np.int16)                     # scanner units, stored as int16
    img = nib.Nifti1Image(data, ph['affine']); img.header['descrip'] = b'scanner X'
    nib.save(img, tmp_path / 'in.nii.gz')
    lo, hi = np.percentile(data.astype(np.float32), [0.5, 99.5])
    outs = {}
    for name, flags in (('units', []), ('norm', ['--normalised'])):
        r = cli('prod9-train-autoencoder', 'infer', '--config', c, '--checkpoint', tmp_path / 'run' / 'autoencoder.safetensors',
                '--input', tmp_path / 'in.nii.gz', '--output', tmp_path / f'{name}.nii.gz', *flags)
        assert r.returncode == 0, r.stderr[-3000:]
        o = nib.load(tmp_path / f'{name}.nii.gz'); outs[name] = o.get_fdata(dtype=np.float32)
        assert o.shape == data.shape and o.get_data_dtype() == np.float32 and o.header['descrip'].tobytes().rstrip(b'\0') == b'scanner X'
        np.testing.assert_allclose(o.affine, ph['affine'], atol=1e-5); np.testing.assert_allclose(o.header.get_zooms(), img.header.get_zooms())
    assert 0 <= outs['norm'].min() and outs['norm'].max() <= 1
    np.testing.assert_allclose(outs['units'], outs['norm'] * (hi - lo) + lo, rtol=1e-5, atol=1e-2)       # the scaling, inverted
    assert lo - 1e-3 <= outs['units'].min() and outs['units'].max() <= hi + 1e-3 and outs['units'].max() > 100

def test_validation_reports_the_perceptual_distance_with_a_local_medicalnet_file(cli, c, tmp_path):
    "loss.perceptual with MedicalNet's file layout (random weights: the real file cannot be downloaded here): training uses it, validation reports it."
    import csv
    from monai.networks.nets import resnet10
    w = tmp_path / 'resnet_10_23dataset.pth'
    torch.save({'state_dict': {f'module.{k}': v for k, v in resnet10(spatial_dims=3, n_input_channels=1, shortcut_type='B', bias_downsample=False).state_dict().items()}}, w)
    r = cli('prod9-train-autoencoder', 'train', '--config', c, '--set', 'loss.perceptual.weight=0.1', '--set', f'loss.perceptual.weights_path={w}')
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader(open(next((tmp_path / 'run' / 'logs').rglob('metrics.csv')))))
    assert any(row.get('val_perceptual') for row in rows) and any(row.get('train/perceptual') for row in rows)
    r = cli('prod9-train-autoencoder', 'train', '--config', c, '--output-dir', tmp_path / 'r2', '--set', 'loss.perceptual.weight=0.1',
            '--set', f'loss.perceptual.weights_path={tmp_path / "nope.pth"}')
    assert r.returncode == 1 and "nope.pth does not exist; expected MedicalNet's resnet_10_23dataset.pth" in r.stderr
