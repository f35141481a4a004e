"""Issue 19 (real scale) on CPU: generation at scale (batched, streamed, resumable, with a manifest), EMA through a command."""
import csv, os, signal, subprocess, time
import nibabel as nib, torch
import pytest
from prod9.autoencoder.autoencoder_fsq import build_autoencoder, FSQModelConfig
from prod9.training.autoencoder_fsq import export_autoencoder
from conftest import ROOT

TINY = """
seed: 0
output_dir: {out}
autoencoder_path: {ae}
data: {{source: phantoms, num_cases: 6, shape: [16, 16, 16], roi_size: [16, 16, 16], batch_size: 4, val_fraction: 0.34}}
model: {{hidden_dim: 16, num_layers: 1, num_heads: 2}}
sampler: {{steps: 2}}
training: {{lr: 0.001, warmup_steps: 1}}
sliding_window: {{roi_size: [16, 16, 16], overlap: 0.25}}
trainer: {{max_epochs: 2, enable_progress_bar: false, log_every_n_steps: 1, loggers: [csv], accelerator: cpu}}
"""

@pytest.fixture(scope='module')
def trained(tmp_path_factory, request):
    "A tiny stage-2 run on phantoms: (config, best.ckpt)."
    from conftest import run_cli
    d = tmp_path_factory.mktemp('scale'); torch.manual_seed(0)
    m = FSQModelConfig(channels=[8, 8, 8], levels=[5, 5, 5])
    ae = export_autoencoder(build_autoencoder(m), m, d / 'ae.safetensors')
    c = d / 'tf.yaml'; c.write_text(TINY.format(out=d / 'run', ae=ae))
    r = run_cli('prod9-train-transformer', 'train', '--config', c, '--set', 'ema.enabled=true', '--set', 'ema.decay=0.5')
    assert r.returncode == 0, r.stderr[-3000:]
    return c, d / 'run' / 'best.ckpt'

def test_ema_through_the_command(trained):
    "ema.enabled: the checkpoint's weights are the average, the raw weights beside them, and generation loads the average."
    from prod9.files import read_lightning_checkpoint
    from prod9.training.transformer import load_transformer_checkpoint
    ck = read_lightning_checkpoint(trained[1])
    assert set(ck['state_dict']) == set(ck['current_model_state'])
    k = 'transformer.head.weight'
    assert not torch.equal(ck['state_dict'][k], ck['current_model_state'][k])
    assert torch.equal(load_transformer_checkpoint(trained[1]).state_dict()[k], ck['state_dict'][k])

def _samples(d): return sorted(p.name for p in d.glob('sample_*_T1.nii.gz')) if d.is_dir() else []

def test_generation_killed_half_way_and_rerun(cli, trained, tmp_path):
    "200 volumes in batches of 8: killed after about half, the rerun ends with 200 readable files and a manifest, none regenerated."
    cfg, ck = trained
    out = tmp_path / 'gen'
    argv = ['prod9-train-transformer', 'generate', '--config', str(cfg), '--checkpoint', str(ck), '--output', str(out),
            '--num-samples', '200', '--batch-size', '8', '--modality', 'T1', '--seed', '3']
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')]))}
    p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    t0 = time.time()
    while len(_samples(out)) < 100 and p.poll() is None and time.time() - t0 < 300: time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL); p.wait()
    first = {n: (out / n).stat().st_mtime_ns for n in _samples(out)}
    assert 100 <= len(first) < 200, f"{len(first)} files when killed (the run ended or never started: {p.stderr.read()[-2000:]!r})"
    r = cli(*argv)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"wrote {200 - len(first)} volumes to {out}; {len(first)} were already there and kept" in r.stdout    # not "wrote 200"
    names = _samples(out)
    assert names == [f'sample_{i:04d}_T1.nii.gz' for i in range(1, 201)]
    assert {n: (out / n).stat().st_mtime_ns for n in first} == first                        # none regenerated
    for n in names: assert nib.load(out / n).get_fdata().shape == (16, 16, 16)             # every file readable
    assert not [q.name for q in out.iterdir() if q.name.startswith('.')]                   # no temporary file of the killed write left
    rows = list(csv.DictReader(open(out / 'manifest.csv')))
    assert [r['file'] for r in rows] == names and {r['label'] for r in rows} == {'T1'} and {r['checkpoint'] for r in rows} == {str(ck)}
    assert {r['seed'] for r in rows if r['index'] in ('1', '8')} == {'3'} and rows[8]['seed'] == '11'   # batch at sample s: seed 3 + s

def test_device_and_precision_reach_encoding_and_generation(trained, tmp_path, monkeypatch):
    "The device device_from_config names, and trainer.precision's autocast, reach the stage-2 cache's encoding and generation's decoding."
    import prod9.cli.transformer as T
    from prod9.autoencoder.autoencoder_fsq import AutoencoderFSQ
    from prod9.training.transformer import MaskGiTLightning
    cfg, ck = trained
    dev, seen = torch.device('cpu'), []
    monkeypatch.setattr(T, 'device_from_config', lambda c: seen.append('device_from_config') or dev)
    for name in ('encode', 'decode'):
        orig = getattr(AutoencoderFSQ, name)
        def spy(self, x, _orig=orig, _name=name):
            seen.append((_name, x.device.type, torch.is_autocast_enabled('cpu'), torch.get_autocast_dtype('cpu'))); return _orig(self, x)
        monkeypatch.setattr(AutoencoderFSQ, name, spy)
    orig_pre, orig_to = T.pre_encode, MaskGiTLightning.to
    monkeypatch.setattr(T, 'pre_encode', lambda *a, **k: seen.append(('pre_encode', k['device'] is dev, k['precision'])) or orig_pre(*a, **k))
    monkeypatch.setattr(MaskGiTLightning, 'to', lambda self, *a, **k: seen.append(('module.to', a[0] is dev if a else None)) or orig_to(self, *a, **k))
    bf16 = ['--set', 'trainer.precision=bf16-mixed', '--set', f'token_cache_dir={tmp_path / "tokens"}']
    assert T.main(['validate', '--config', str(cfg), '--checkpoint', str(ck), *bf16]) == 0
    assert ('pre_encode', True, 'bf16-mixed') in seen
    assert ('encode', 'cpu', True, torch.bfloat16) in seen and not any(s[0] == 'encode' and not s[2] for s in seen if isinstance(s, tuple))
    seen.clear()
    assert T.main(['generate', '--config', str(cfg), '--checkpoint', str(ck), '--output', str(tmp_path / 'g'), '--num-samples', '2',
                   '--modality', 'T1', *bf16]) == 0
    assert ('module.to', True) in seen and 'device_from_config' in seen
    assert [s for s in seen if isinstance(s, tuple) and s[0] == 'decode'] and all(s[2] for s in seen if isinstance(s, tuple) and s[0] == 'decode')
