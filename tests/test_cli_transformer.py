"""prod9-train-transformer end to end on phantoms with tiny configs: label-conditional and in-context, seeds, bad input."""
import numpy as np, nibabel as nib, torch
import pytest
from conftest import evaluate_and_generate
from prod9.autoencoder.autoencoder_fsq import build_autoencoder, FSQModelConfig
from prod9.training.autoencoder_fsq import export_autoencoder
from prod9.phantoms import make_phantom

TINY = """
seed: 0
output_dir: {out}
autoencoder_path: {ae}
data: {{source: phantoms, num_cases: 6, shape: [16, 16, 16], roi_size: [16, 16, 16], batch_size: 4, val_fraction: 0.34, test_fraction: 0.17}}
model: {{transformer_type: {kind}, hidden_dim: 32, num_layers: 2, num_heads: 4, max_context_length: 3}}
sampler: {{steps: 4}}
training: {{lr: 0.001, warmup_steps: 2}}
sliding_window: {{roi_size: [16, 16, 16], overlap: 0.25}}
validation: {{num_samples: {nval}}}
trainer: {{max_epochs: 1, enable_progress_bar: false, log_every_n_steps: 1, loggers: [csv]}}
"""

@pytest.fixture(scope='module')
def ae_path(tmp_path_factory):
    d = tmp_path_factory.mktemp('ae'); torch.manual_seed(0)
    m = FSQModelConfig(channels=[8, 8, 8], levels=[5, 5, 5])
    return export_autoencoder(build_autoencoder(m), m, d / 'ae.safetensors')

def write_cfg(tmp_path, ae, kind='label', nval=1):
    p = tmp_path / f'{kind}.yaml'; p.write_text(TINY.format(out=tmp_path / kind, ae=ae, kind=kind, nval=nval)); return p

def test_label_conditional_round_trip(cli, tmp_path, ae_path):
    c = write_cfg(tmp_path, ae_path)
    r = cli('prod9-train-transformer', 'train', '--config', c); assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / 'label'
    assert (run / 'best.ckpt').exists() and (run / 'last.ckpt').exists() and (run / 'tokens' / 'train.safetensors').exists()
    outs = evaluate_and_generate('prod9-train-transformer', c, run / 'best.ckpt', ('val_acc', 'test_acc'), tmp_path, '--modality', 'T1',
                                 files=['manifest.csv', 'sample_0001_T1.nii.gz', 'sample_0002_T1.nii.gz', 'samples_T1.png'], volume='sample_000{i}_T1.nii.gz')
    assert outs['a'].shape == (2, 16, 16, 16) and 0 <= outs['a'].min() and outs['a'].max() <= 1
    np.testing.assert_array_equal(outs['a'], outs['b'])               # same seed, same volumes
    assert not np.array_equal(outs['a'], outs['c'])                   # another seed, other volumes
    aff = nib.load(tmp_path / 'a' / 'sample_0001_T1.nii.gz').affine
    np.testing.assert_allclose(aff, make_phantom((16, 16, 16), 0)['affine'], atol=1e-5)   # the training volumes' geometry
    r = cli('prod9-train-transformer', 'generate', '--config', c, '--checkpoint', run / 'best.ckpt', '--output', tmp_path / 'all', '--num-samples', 1)
    assert r.returncode == 0 and len(list((tmp_path / 'all').glob('*.nii.gz'))) == 4            # every modality by default
    # generate --roi-size / --overlap (seed 001): the decoder's sliding window is the one the flags give
    from unittest import mock
    from prod9.autoencoder import inference
    from prod9.cli.transformer import main
    seen, init = [], inference.AutoencoderInferenceWrapper.__init__
    def spy(self, ae, sw=None, precision=None): seen.append(sw); init(self, ae, sw, precision)
    with mock.patch.object(inference.AutoencoderInferenceWrapper, '__init__', spy):
        assert main(['generate', '--config', str(c), '--checkpoint', str(run / 'best.ckpt'), '--output', str(tmp_path / 'roi'), '--num-samples', '1',
                     '--modality', 'T2', '--roi-size', '8', '8', '8', '--overlap', '0.5']) == 0
    assert seen and all(tuple(sw.roi_size) == (8, 8, 8) and sw.overlap == 0.5 for sw in seen)
    # --set on generate reaches the sampler (issue 37: it gave the same bytes as the default)
    r = cli('prod9-train-transformer', 'generate', '--config', c, '--checkpoint', run / 'best.ckpt', '--output', tmp_path / 'one_step',
            '--num-samples', 2, '--modality', 'T1', '--seed', 5, '--set', 'sampler.steps=1')
    assert r.returncode == 0, r.stderr[-3000:]
    assert not np.array_equal(np.stack([nib.load(tmp_path / 'one_step' / f'sample_000{i}_T1.nii.gz').get_fdata() for i in (1, 2)]), outs['a'])
    # another stage-1 export than the one the model was trained on: refused, whatever its shapes (issue 37: volumes, exit 0)
    torch.manual_seed(1)
    for name, levels in (('same_shapes', [5, 5, 5]), ('more_codes', [8, 8, 8])):
        m = FSQModelConfig(channels=[8, 8, 8], levels=levels)
        other = export_autoencoder(build_autoencoder(m), m, tmp_path / f'{name}.safetensors')
        r = cli('prod9-train-transformer', 'generate', '--config', c, '--checkpoint', run / 'best.ckpt', '--output', tmp_path / name,
                '--num-samples', 1, '--set', f'autoencoder_path={other}')
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr[-2000:]
        assert f'{name}.safetensors: not the stage-1 export the model of --checkpoint' in r.stderr, r.stderr
        assert ('codes 512 (trained with 125)' if name == 'more_codes' else 'other weights') in r.stderr, r.stderr
        assert not (tmp_path / name).exists() or not list((tmp_path / name).glob('*.nii.gz'))

def test_in_context_round_trip(cli, tmp_path, ae_path):
    c = write_cfg(tmp_path, ae_path, 'single_stream', nval=0)
    r = cli('prod9-train-transformer', 'train', '--config', c); assert r.returncode == 0, r.stderr[-3000:]
    ck = tmp_path / 'single_stream' / 'best.ckpt'
    r = cli('prod9-train-transformer', 'generate', '--config', c, '--checkpoint', ck, '--output', tmp_path / 'tr',
            '--num-samples', 2, '--source-modality', 'T1', '--target-modality', 'T2', '--seed', 1)
    assert r.returncode == 0, r.stderr[-3000:]
    names = sorted(p.name for p in (tmp_path / 'tr').iterdir())
    assert 'sample_0001_T1_to_T2.nii.gz' in names and 'sample_0002_source_T1.nii.gz' in names and 'samples_T1_to_T2.png' in names
    assert nib.load(tmp_path / 'tr' / 'sample_0001_T1_to_T2.nii.gz').shape == (16, 16, 16)
    r = cli('prod9-train-transformer', 'generate', '--config', c, '--checkpoint', ck, '--output', tmp_path / 'x', '--modality', 'T1')
    assert r.returncode == 1 and 'in-context model' in r.stderr
    check_translation_of_a_file(cli, tmp_path, c, ck)

def test_bad_inputs(cli, tmp_path, ae_path):
    c = write_cfg(tmp_path, tmp_path / 'missing_ae.safetensors')
    r = cli('prod9-train-transformer', 'train', '--config', c)
    assert r.returncode == 1 and 'autoencoder_path' in r.stderr and 'does not exist' in r.stderr
    c = write_cfg(tmp_path, ae_path)
    r = cli('prod9-train-transformer', 'generate', '--config', c, '--checkpoint', ae_path, '--output', tmp_path / 'o')
    assert r.returncode == 1 and 'not a prod9-train-transformer checkpoint' in r.stderr
    r = cli('prod9-train-transformer', 'validate', '--config', c)
    assert r.returncode == 1 and 'needs --checkpoint' in r.stderr
    bad = tmp_path / 'bad.yaml'; bad.write_text(c.read_text().replace('sampler: {steps: 4}', 'sampler: {stepz: 4}'))
    r = cli('prod9-train-transformer', 'train', '--config', bad)
    assert r.returncode == 1 and 'sampler.stepz: unknown key' in r.stderr

def check_translation_of_a_file(cli, tmp_path, c, ck):
    """generate --input (issue 21): a held-out case's T1 given as a file translates exactly as the held-out path does (same tokens,
    same seed), and the result lies on the input's grid with its affine; a larger, shifted file comes back at its own size."""
    from prod9.training.cache import TokenDataset, load_tokens
    r = cli('prod9-train-transformer', 'generate', '--config', c, '--checkpoint', ck, '--output', tmp_path / 'held', '--num-samples', 1,
            '--source-modality', 'T1', '--target-modality', 'T2', '--seed', 3)
    assert r.returncode == 0, r.stderr[-3000:]
    cache = tmp_path / 'single_stream' / 'tokens' / 'test.safetensors'
    held = TokenDataset(cache, 'in_context', [0], [2])
    case = load_tokens(cache)['case_ids'][int(held[0]['case_index'])]                     # the held-out case sample 1 came from
    seed = 0 * 100_003 + int(case.split('_')[1])                                          # its phantom (data.seed 0)
    ph = make_phantom((16, 16, 16), seed)
    from prod9.io import write_nifti
    write_nifti(ph['T1'], tmp_path / 'my_t1.nii.gz', ph['affine'])
    r = cli('prod9-train-transformer', 'generate', '--config', c, '--checkpoint', ck, '--input', tmp_path / 'my_t1.nii.gz',
            '--source-modality', 'T1', '--target-modality', 'T2', '--output', tmp_path / 'out' / 't2.nii.gz', '--seed', 3)
    assert r.returncode == 0, r.stderr[-3000:]
    mine, ref = nib.load(tmp_path / 'out' / 't2.nii.gz'), nib.load(tmp_path / 'held' / 'sample_0001_T1_to_T2.nii.gz')
    np.testing.assert_allclose(mine.affine, ph['affine'], atol=1e-5)
    np.testing.assert_allclose(mine.get_fdata(), ref.get_fdata(), atol=1e-4)              # the same translation as the held-out path
    big = np.zeros((20, 18, 16), np.float32); big[2:18, 1:17] = ph['T1']                   # a larger volume around the head
    aff = ph['affine'].copy(); aff[:3, 3] -= aff[:3, :3] @ np.array([2, 1, 0])
    write_nifti((big * 900).astype(np.int16), tmp_path / 'big_t1.nii.gz', aff)
    r = cli('prod9-train-transformer', 'generate', '--config', c, '--checkpoint', ck, '--input', tmp_path / 'big_t1.nii.gz',
            '--source-modality', 'T1', '--target-modality', 'T2', '--output', tmp_path / 'big_t2.nii.gz')
    assert r.returncode == 0, r.stderr[-3000:]
    out = nib.load(tmp_path / 'big_t2.nii.gz')
    assert out.shape == (20, 18, 16) and np.allclose(out.affine, aff, atol=1e-5) and out.get_fdata().max() > 0
    r = cli('prod9-train-transformer', 'generate', '--config', c, '--checkpoint', ck, '--input', tmp_path / 'my_t1.nii.gz',
            '--source-modality', 'T1', '--target-modality', 'T1', '--output', tmp_path / 'x.nii.gz')
    assert r.returncode == 1 and 'is the source' in r.stderr
    r = cli('prod9-train-transformer', 'generate', '--config', c, '--checkpoint', ck, '--input', tmp_path / 'my_t1.nii.gz',
            '--source-modality', 'T1', '--target-modality', 'T2', '--output', tmp_path / 'folder')
    assert r.returncode == 1 and 'the NIfTI file to write' in r.stderr
