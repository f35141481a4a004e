"""prod9-train-autoencoder end to end on phantoms with a tiny config: train -> validate -> test -> infer, resume, bad input."""
import numpy as np, nibabel as nib, torch
import pytest
from prod9.io import write_nifti
from prod9.phantoms import make_phantom

TINY = """
seed: 0
output_dir: {out}
data: {{source: phantoms, num_cases: 4, shape: [16, 16, 16], roi_size: [16, 16, 16], batch_size: 4, val_fraction: 0.25, test_fraction: 0.25}}
model: {{channels: [8, 8], levels: [5, 5, 5]}}
loss: {{focal_frequency: {{weight: 0.5}}}}
sliding_window: {{roi_size: [16, 16, 16], overlap: 0.25}}
trainer: {{max_epochs: {epochs}, enable_progress_bar: false, log_every_n_steps: 1, loggers: [csv]}}
"""

@pytest.fixture
def cfg(tmp_path):
    def make(epochs=1):
        p = tmp_path / f'tiny_{epochs}.yaml'; p.write_text(TINY.format(out=tmp_path / 'run', epochs=epochs)); return p
    return make

def test_round_trip(cli, cfg, tmp_path):
    c = cfg(1)
    r = cli('prod9-train-autoencoder', 'train', '--config', c); assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / 'run'
    assert (run / 'best.ckpt').exists() and (run / 'last.ckpt').exists() and (run / 'autoencoder.safetensors').exists()
    assert list((run / 'logs').rglob('metrics.csv'))
    for cmd in ('validate', 'test'):
        r = cli('prod9-train-autoencoder', cmd, '--config', c, '--checkpoint', run / 'best.ckpt'); assert r.returncode == 0, r.stderr[-3000:]
        assert ('val_psnr' if cmd == 'validate' else 'test_psnr') in r.stdout
    ph = make_phantom((40, 36, 20), 7)
    write_nifti(ph['T1'], tmp_path / 'in.nii.gz', ph['affine'])
    for ck in (run / 'best.ckpt', run / 'autoencoder.safetensors'):
        r = cli('prod9-train-autoencoder', 'infer', '--config', c, '--checkpoint', ck, '--input', tmp_path / 'in.nii.gz',
                '--output', tmp_path / 'out.nii.gz', '--roi-size', '16', '16', '16', '--overlap', '0.5', '--sw-batch-size', '2')
        assert r.returncode == 0, r.stderr[-3000:]
        out = nib.load(tmp_path / 'out.nii.gz')
        assert out.shape == (40, 36, 20)
        np.testing.assert_allclose(out.affine, ph['affine'])

def test_resume_continues_step_count(cli, cfg, tmp_path):
    r = cli('prod9-train-autoencoder', 'train', '--config', cfg(1)); assert r.returncode == 0, r.stderr[-3000:]
    last = tmp_path / 'run' / 'last.ckpt'
    s1 = torch.load(last, weights_only=True)['global_step']
    r = cli('prod9-train-autoencoder', 'train', '--config', cfg(2), '--checkpoint', last); assert r.returncode == 0, r.stderr[-3000:]
    s2 = torch.load(last, weights_only=True)
    assert s1 > 0 and s2['global_step'] == 2 * s1 and s2['epoch'] == 1

def test_cosine_lr_reaches_its_floor_and_survives_resume(cli, cfg, tmp_path):
    "training.lr_decay: cosine ends each run at min_lr_ratio × lr; a resumed, longer run stretches the cosine to its new end."
    cos = lambda c: (c.write_text(c.read_text() + 'training: {lr_decay: cosine, min_lr_ratio: 0.1, lr: 1.0e-3}\n'), c)[1]
    last = tmp_path / 'run' / 'last.ckpt'
    lr = lambda ck: ck['optimizer_states'][0]['param_groups'][0]['lr']
    r = cli('prod9-train-autoencoder', 'train', '--config', cos(cfg(1))); assert r.returncode == 0, r.stderr[-3000:]
    s1 = torch.load(last, weights_only=True)
    assert s1['global_step'] > 0 and lr(s1) == pytest.approx(1e-4)
    r = cli('prod9-train-autoencoder', 'train', '--config', cos(cfg(2)), '--checkpoint', last); assert r.returncode == 0, r.stderr[-3000:]
    s2 = torch.load(last, weights_only=True)
    assert s2['global_step'] == 2 * s1['global_step'] and lr(s2) == pytest.approx(1e-4)
    assert s2['lr_schedulers'][0]['last_epoch'] == s2['global_step']

def test_bad_inputs(cli, cfg, tmp_path):
    c = cfg(1)
    r = cli('prod9-train-autoencoder', 'train', '--config', tmp_path / 'nope.yaml')
    assert r.returncode == 1 and 'nope.yaml: config file not found' in r.stderr
    bad = tmp_path / 'bad.yaml'; bad.write_text(c.read_text().replace('levels: [5, 5, 5]', 'levels: [5, 5, 5], lvls: 3'))
    r = cli('prod9-train-autoencoder', 'train', '--config', bad)
    assert r.returncode == 1 and 'model.lvls: unknown key' in r.stderr
    bad.write_text(c.read_text() + 'training: {lr_decay: linear}\n')
    r = cli('prod9-train-autoencoder', 'train', '--config', bad)
    assert r.returncode == 1 and 'training.lr_decay' in r.stderr and 'cosine' in r.stderr
    r = cli('prod9-train-autoencoder', 'infer', '--config', c, '--checkpoint', tmp_path / 'missing.ckpt', '--input', 'x', '--output', 'y')
    assert r.returncode == 1 and 'missing.ckpt: no such file' in r.stderr
