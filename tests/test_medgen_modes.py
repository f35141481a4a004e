"""MedGen's modes (seed 002, issue 21) through prod9-train-maisi-diffusion, end to end on phantoms: seg (masks), bravo (an image for a
mask), dual (T1 and T1ce for a mask), in pixel and latent space, in 2D and 3D, and the seg → image chain."""
from pathlib import Path
import numpy as np, nibabel as nib, torch
import pytest
from prod9.io import write_nifti
from prod9.phantoms import make_phantom

UNET = "model: {num_channels: [8, 8], num_res_blocks: 1, attention_levels: [false, false], num_head_channels: [0, 8], norm_num_groups: 8}"

def config(tmp, name, space, dims, mode, extra_data=''):
    roi = '[16, 16, 16]' if dims == 3 else '[16, 16]'
    data = (f"{{source: phantoms, num_cases: 6, shape: [16, 16, 16], roi_size: {roi}, spatial_dims: {dims}, slices_per_volume: 2, "
            f"batch_size: 4, val_fraction: 0.34, test_fraction: 0.17{extra_data}}}")
    text = f"""seed: 0
output_dir: {tmp}/{name}
space: {space}
mode: {mode}
{f'vae_path: {tmp}/vae_{mode}.safetensors' if space == 'latent' else ''}
data: {data}
{UNET}
scheduler: {{num_inference_steps: 3}}
training: {{lr: 0.001, warmup_steps: 1}}
sliding_window: {{roi_size: {roi}}}
trainer: {{max_epochs: 1, enable_progress_bar: false, log_every_n_steps: 1, loggers: [csv]}}
"""
    p = tmp / f'{name}.yaml'; p.write_text(text); return p

def vaes(tmp, dims):
    "Untrained tiny VAE exports (x2) for each mode's samples: 3 mask channels (seg), 1 image (bravo), 2 images (dual)."
    from prod9.autoencoder.autoencoder_maisi import MAISIVAEModelConfig, MAISIVAE
    from prod9.training.maisi_vae import export_vae
    torch.manual_seed(0)
    for mode, c in (('seg', 3), ('bravo', 1), ('dual', 2)):
        v = MAISIVAEModelConfig(spatial_dims=dims, in_channels=c, out_channels=c, num_channels=[8, 8], num_res_blocks=1, norm_num_groups=8)
        export_vae(MAISIVAE(**v.model_dump()), v, tmp / f'vae_{mode}.safetensors')

@pytest.mark.parametrize('space,dims', [('pixel', 3), ('latent', 3), ('pixel', 2), ('latent', 2)])
def test_modes(cli, tmp_path, space, dims):
    if space == 'latent': vaes(tmp_path, dims)
    size = (16,) * dims
    run = lambda *a: cli('prod9-train-maisi-diffusion', *map(str, a))
    cfgs = {'seg': config(tmp_path, 'seg', space, dims, 'seg'),
            'bravo': config(tmp_path, 'bravo', space, dims, 'bravo', ', modalities: [FLAIR]'),
            'dual': config(tmp_path, 'dual', space, dims, 'dual', ', modalities: [T1, T1ce], stack_modalities: true')}
    for mode, c in cfgs.items():
        r = run('train', '--config', c); assert r.returncode == 0, f"{mode}: {r.stderr[-3000:]}"
    ck = {m: tmp_path / m / 'last.ckpt' for m in cfgs}
    # seg: label maps of the data's classes
    r = run('generate', '--config', cfgs['seg'], '--checkpoint', ck['seg'], '--output', tmp_path / 'masks', '--num-samples', 2)
    assert r.returncode == 0, r.stderr[-3000:]
    m = nib.load(tmp_path / 'masks' / 'sample_0001_mask.nii.gz')
    assert m.shape == size and set(np.unique(m.get_fdata())) <= {0, 1, 2, 3}
    # bravo from a mask file: the image and the very mask it was given
    ph = make_phantom((16, 16, 16), 7); seg = ph['seg'] if dims == 3 else ph['seg'][:, :, 8]
    write_nifti(seg.astype(np.int16), tmp_path / 'mask.nii.gz', ph['affine'])
    r = run('generate', '--config', cfgs['bravo'], '--checkpoint', ck['bravo'], '--output', tmp_path / 'b', '--num-samples', 1, '--mask', tmp_path / 'mask.nii.gz')
    assert r.returncode == 0, r.stderr[-3000:]
    assert nib.load(tmp_path / 'b' / 'sample_0001_FLAIR.nii.gz').shape == size
    np.testing.assert_array_equal(nib.load(tmp_path / 'b' / 'sample_0001_mask.nii.gz').get_fdata(), seg)
    # dual for held-out masks: both channels and the mask
    r = run('generate', '--config', cfgs['dual'], '--checkpoint', ck['dual'], '--output', tmp_path / 'd', '--num-samples', 1)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / 'd').glob('*.nii.gz')) == ['sample_0001_T1.nii.gz', 'sample_0001_T1ce.nii.gz', 'sample_0001_mask.nii.gz']
    # the chain: the seg model's masks, an image for each; the image is the one bravo makes for that mask given as a file
    r = run('generate', '--config', cfgs['bravo'], '--seg-model', ck['seg'], '--image-model', ck['bravo'], '--num-images', 2, '--output', tmp_path / 'chain')
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / 'chain').glob('*.nii.gz')) == ['sample_0001_FLAIR.nii.gz', 'sample_0001_mask.nii.gz',
                                                                            'sample_0002_FLAIR.nii.gz', 'sample_0002_mask.nii.gz']
    r = run('generate', '--config', cfgs['bravo'], '--checkpoint', ck['bravo'], '--output', tmp_path / 'again', '--num-samples', 1,
            '--mask', tmp_path / 'chain' / 'sample_0001_mask.nii.gz')
    assert r.returncode == 0, r.stderr[-3000:]
    np.testing.assert_allclose(nib.load(tmp_path / 'again' / 'sample_0001_FLAIR.nii.gz').get_fdata(),
                               nib.load(tmp_path / 'chain' / 'sample_0001_FLAIR.nii.gz').get_fdata(), atol=1e-5)
    if space == 'pixel' and dims == 3:           # lr-find on a mask-conditioned model, and errors, once
        r = run('lr-find', '--config', cfgs['bravo'], '--output-dir', tmp_path / 'lr', '--lr-steps', 6)
        assert r.returncode == 0 and 'learning-rate finder: 6 steps' in r.stdout, r.stdout + r.stderr[-2000:]
        import re
        assert Path(re.search(r'table (\S+)', r.stdout).group(1)).is_file()
        r = run('generate', '--config', cfgs['seg'], '--checkpoint', ck['seg'], '--output', tmp_path / 'x', '--mask', tmp_path / 'mask.nii.gz')
        assert r.returncode == 1 and 'takes no mask' in r.stderr
        r = run('generate', '--config', cfgs['bravo'], '--seg-model', ck['dual'], '--image-model', ck['bravo'], '--output', tmp_path / 'y')
        assert r.returncode == 1 and 'not a seg model' in r.stderr
        bad = tmp_path / 'bad.yaml'; bad.write_text(cfgs['dual'].read_text().replace(', stack_modalities: true', ''))
        r = run('train', '--config', bad, '--output-dir', tmp_path / 'bad')
        assert r.returncode == 1 and 'stack_modalities' in r.stderr
