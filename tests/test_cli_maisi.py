"""The three MAISI CLIs chained end to end on phantoms with tiny configs: VAE → diffusion → ControlNet → NIfTI."""
import numpy as np, nibabel as nib
from prod9.io import write_nifti
from prod9.phantoms import make_phantom

COMMON = """
seed: 0
data: {{source: phantoms, num_cases: 6, shape: [16, 16, 16], roi_size: [16, 16, 16], batch_size: 4, val_fraction: 0.34, test_fraction: 0.17}}
sliding_window: {{roi_size: [16, 16, 16], overlap: 0.25}}
trainer: {{max_epochs: 1, enable_progress_bar: false, log_every_n_steps: 1, loggers: [csv]}}
"""
VAE = COMMON + """
output_dir: {out}/vae
export_path: {out}/vae.safetensors
model: {{num_channels: [8, 8, 8], num_res_blocks: [1, 1, 1], attention_levels: [false, false, false], norm_num_groups: 8}}
loss: {{kl_weight: 1.0e-6}}
"""
DIFF = COMMON + """
output_dir: {out}/diffusion
vae_path: {out}/vae.safetensors
model: {{num_channels: [16, 32], num_res_blocks: 1, attention_levels: [false, true], num_head_channels: 8, norm_num_groups: 8, conditional: {cond}}}
scheduler: {{strategy: {strategy}, num_inference_steps: 5}}
training: {{lr: 0.001, warmup_steps: 2}}
"""
CN = COMMON + """
output_dir: {out}/controlnet
vae_path: {out}/vae.safetensors
diffusion_path: {out}/diffusion/last.ckpt
controlnet: {{control_type: {ctype}}}
training: {{lr: 0.001, warmup_steps: 2}}
"""

def write(tmp_path, name, text, **kw):
    p = tmp_path / f'{name}.yaml'; p.write_text(text.format(out=tmp_path, **kw)); return p

def ok(r): assert r.returncode == 0, r.stderr[-3000:]; return r

def test_vae_diffusion_controlnet_chain(cli, tmp_path):
    vae = write(tmp_path, 'vae', VAE)
    ok(cli('prod9-train-maisi-vae', 'train', '--config', vae))
    assert (tmp_path / 'vae.safetensors').exists()
    ok(cli('prod9-train-maisi-vae', 'test', '--config', vae, '--checkpoint', tmp_path / 'vae' / 'best.ckpt'))
    ph = make_phantom((20, 18, 16), 3); write_nifti(ph['T2'], tmp_path / 'in.nii.gz', ph['affine'])
    ok(cli('prod9-train-maisi-vae', 'infer', '--config', vae, '--checkpoint', tmp_path / 'vae.safetensors', '--input', tmp_path / 'in.nii.gz',
           '--output', tmp_path / 'rec.nii.gz'))
    assert nib.load(tmp_path / 'rec.nii.gz').shape == (20, 18, 16)

    diff = write(tmp_path, 'diff', DIFF, cond='true', strategy='rflow')
    ok(cli('prod9-train-maisi-diffusion', 'train', '--config', diff))
    ck = tmp_path / 'diffusion' / 'last.ckpt'
    r = ok(cli('prod9-train-maisi-diffusion', 'validate', '--config', diff, '--checkpoint', ck)); assert 'val_loss' in r.stdout
    vols = {}
    for name, seed in (('g1', 3), ('g2', 3)):
        ok(cli('prod9-train-maisi-diffusion', 'generate', '--config', diff, '--checkpoint', ck, '--output', tmp_path / name,
               '--num-samples', 2, '--num-inference-steps', 4, '--modality', 'T2', '--seed', seed))
        vols[name] = nib.load(tmp_path / name / 'sample_0001_T2.nii.gz').get_fdata()
    assert (tmp_path / 'g1' / 'samples_T2.png').exists() and vols['g1'].shape == (16, 16, 16)
    np.testing.assert_array_equal(vols['g1'], vols['g2'])
    np.testing.assert_allclose(nib.load(tmp_path / 'g1' / 'sample_0001_T2.nii.gz').affine, make_phantom((16,) * 3, 0)['affine'], atol=1e-5)

    cn = write(tmp_path, 'cn', CN, ctype='mask+label')
    ok(cli('prod9-train-maisi-controlnet', 'train', '--config', cn))
    cck = tmp_path / 'controlnet' / 'last.ckpt'
    ok(cli('prod9-train-maisi-controlnet', 'test', '--config', cn, '--checkpoint', cck))
    ok(cli('prod9-train-maisi-controlnet', 'generate', '--config', cn, '--checkpoint', cck, '--output', tmp_path / 'c1',
           '--num-samples', 2, '--modality', 'FLAIR', '--num-inference-steps', 4))
    names = sorted(p.name for p in (tmp_path / 'c1').iterdir())
    assert 'sample_0001_FLAIR.nii.gz' in names and 'sample_0001_mask.nii.gz' in names
    seg = make_phantom((16,) * 3, 11)['seg']; write_nifti(seg.astype(np.int16), tmp_path / 'mask.nii.gz', make_phantom((16,) * 3, 11)['affine'])
    ok(cli('prod9-train-maisi-controlnet', 'generate', '--config', cn, '--checkpoint', cck, '--output', tmp_path / 'c2',
           '--num-samples', 1, '--modality', 'T1ce', '--mask', tmp_path / 'mask.nii.gz', '--num-inference-steps', 4))
    np.testing.assert_array_equal(nib.load(tmp_path / 'c2' / 'sample_0001_mask.nii.gz').get_fdata(), seg)
    # a BraTS 2020 mask (enhancing tumour = 4) is read as training reads it (4 -> 3), and the written mask says so
    write_nifti(np.where(seg == 3, 4, seg).astype(np.int16), tmp_path / 'brats2020.nii.gz', make_phantom((16,) * 3, 11)['affine'])
    ok(cli('prod9-train-maisi-controlnet', 'generate', '--config', cn, '--checkpoint', cck, '--output', tmp_path / 'c4',
           '--num-samples', 1, '--modality', 'T1ce', '--mask', tmp_path / 'brats2020.nii.gz', '--num-inference-steps', 2))
    np.testing.assert_array_equal(nib.load(tmp_path / 'c4' / 'sample_0001_mask.nii.gz').get_fdata(), seg)
    write_nifti(np.full((16,) * 3, 7, np.int16), tmp_path / 'sevens.nii.gz')
    r = cli('prod9-train-maisi-controlnet', 'generate', '--config', cn, '--checkpoint', cck, '--output', tmp_path / 'c5', '--modality', 'T1', '--mask', tmp_path / 'sevens.nii.gz')
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and 'sevens.nii.gz: has label(s) [7] that the model does not know' in r.stderr
    assert not (tmp_path / 'c5').exists()
    # a mask of another size, stored in LPS order, is brought to the model's grid as training read masks (RAS, centre pad), and says so
    small = np.zeros((12, 14, 16), np.int16); small[2:5, 3:6, 4:8] = 2
    write_nifti(small[::-1, ::-1].copy(), tmp_path / 'lps.nii.gz', np.diag([-1., -1, 1, 1]))
    r = cli('prod9-train-maisi-controlnet', 'generate', '--config', cn, '--checkpoint', cck, '--output', tmp_path / 'c6',
            '--num-samples', 1, '--modality', 'T1', '--mask', tmp_path / 'lps.nii.gz', '--num-inference-steps', 2)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'reoriented LPS -> RAS' in r.stderr and 'centre padded 12x14x16 -> 16x16x16' in r.stderr, r.stderr[-2000:]
    np.testing.assert_array_equal(nib.load(tmp_path / 'c6' / 'sample_0001_mask.nii.gz').get_fdata(), np.pad(small, ((2, 2), (1, 1), (0, 0))))
    big = tmp_path / 'big.nii.gz'; edge = np.zeros((20, 16, 16), np.int16); edge[0, 8, 8] = 1; write_nifti(edge, big)
    r = cli('prod9-train-maisi-controlnet', 'generate', '--config', cn, '--checkpoint', cck, '--output', tmp_path / 'c3', '--modality', 'T1', '--mask', big)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and 'would cut away 1 labelled voxel(s)' in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / 'c3').exists()
    r = cli('prod9-train-maisi-controlnet', 'generate', '--config', cn, '--checkpoint', cck, '--output', tmp_path / 'c3')
    assert r.returncode == 1 and 'needs --modality' in r.stderr

def test_ddpm_strategy_and_errors(cli, tmp_path):
    vae = write(tmp_path, 'vae', VAE); ok(cli('prod9-train-maisi-vae', 'train', '--config', vae))
    diff = write(tmp_path, 'diff', DIFF, cond='false', strategy='ddpm')
    ok(cli('prod9-train-maisi-diffusion', 'train', '--config', diff))
    ok(cli('prod9-train-maisi-diffusion', 'generate', '--config', diff, '--checkpoint', tmp_path / 'diffusion' / 'last.ckpt',
           '--output', tmp_path / 'g', '--num-samples', 1, '--num-inference-steps', 3))
    assert (tmp_path / 'g' / 'sample_0001.nii.gz').exists()
    r = cli('prod9-train-maisi-diffusion', 'generate', '--config', diff, '--checkpoint', tmp_path / 'diffusion' / 'last.ckpt', '--output', tmp_path / 'h', '--modality', 'T1')
    assert r.returncode == 1 and 'class-conditional' in r.stderr
    cn = write(tmp_path, 'cn', CN.replace('{out}/diffusion/last.ckpt', '{out}/nope.ckpt'), ctype='mask')
    r = cli('prod9-train-maisi-controlnet', 'train', '--config', cn)
    assert r.returncode == 1 and 'diffusion_path' in r.stderr and 'does not exist' in r.stderr
    bad = write(tmp_path, 'bad', DIFF.replace('{out}/vae.safetensors', '{out}/diffusion/last.ckpt'), cond='false', strategy='rflow')
    r = cli('prod9-train-maisi-diffusion', 'train', '--config', bad, '--output-dir', tmp_path / 'bad')
    assert r.returncode == 1 and 'vae_path' in r.stderr and 'not a MAISI VAE export' in r.stderr

def test_body_region_and_spacing_conditioning(cli, tmp_path):
    "maisi3d-ddpm's conditions (issue 21): the body region and the voxel spacing change the output; bad values are clear errors."
    import torch
    vae = write(tmp_path, 'vae', VAE); ok(cli('prod9-train-maisi-vae', 'train', '--config', vae))
    text = DIFF.replace('conditional: {cond}}}', 'conditional: {cond}, region_conditioning: true, spacing_conditioning: true}}')
    diff = write(tmp_path, 'diff', text.replace('batch_size: 4,', 'batch_size: 4, body_region: head_neck,'), cond='false', strategy='ddpm')
    ok(cli('prod9-train-maisi-diffusion', 'train', '--config', diff, '--set', 'trainer.max_epochs=3'))
    ck = tmp_path / 'diffusion' / 'last.ckpt'
    hp = torch.load(ck, weights_only=True)['hyper_parameters']
    mm = np.linalg.norm(make_phantom((16,) * 3, 0)['affine'][:3, :3], axis=0)        # a 16^3 phantom of a head: 15 mm voxels
    assert hp['conditions']['region'] == [0, 0] and np.allclose(hp['conditions']['spacing'], mm, atol=1e-3)      # head_neck; the data's spacing
    def gen(name, *flags):
        ok(cli('prod9-train-maisi-diffusion', 'generate', '--config', diff, '--checkpoint', ck, '--output', tmp_path / name,
               '--num-samples', 1, '--num-inference-steps', 3, '--seed', 4, *flags))
        return nib.load(tmp_path / name / 'sample_0001.nii.gz').get_fdata()
    default, head, chest = gen('d'), gen('h', '--body-region', 'head_neck'), gen('c', '--body-region', 'chest_abdomen')
    np.testing.assert_array_equal(default, head)                   # the default is the training data's region and spacing
    assert not np.array_equal(head, chest)                         # the same seed, another region: another volume
    assert not np.array_equal(head, gen('s', '--spacing', '2', '2', '3'))
    r = cli('prod9-train-maisi-diffusion', 'generate', '--config', diff, '--checkpoint', ck, '--output', tmp_path / 'x', '--body-region', 'pelvis')
    assert r.returncode == 1 and "unknown body region 'pelvis'" in r.stderr and 'chest_abdomen' in r.stderr and not (tmp_path / 'x').exists()
    nodata = write(tmp_path, 'nodata', text, cond='false', strategy='ddpm')
    r = cli('prod9-train-maisi-diffusion', 'train', '--config', nodata, '--output-dir', tmp_path / 'nd')
    assert r.returncode == 1 and 'data.body_region' in r.stderr
