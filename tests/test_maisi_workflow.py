"""Seed 004's MAISI workflow as prod9 commands, in sequence on a folder of phantoms (issue 21): setup → train-vae → embed →
--create-json-only → train → infer, leaving the seed's file layout (embeddings with their JSON, models, synthetic_*.nii.gz)."""
import json
import numpy as np, nibabel as nib
from prod9.io import write_nifti
from prod9.phantoms import make_phantom

TINY_VAE = ["model.num_channels=[8, 8, 8]", "model.num_res_blocks=[1, 1, 1]", "trainer.max_epochs=1", "data.crops_per_volume=1",
            "trainer.enable_progress_bar=false"]
TINY_UNET = ["model.num_channels=[8, 8]", "model.num_res_blocks=1", "model.attention_levels=[false, false]", "model.num_head_channels=[0, 8]",
             "model.norm_num_groups=8", "trainer.max_epochs=2", "training.warmup_steps=1", "trainer.enable_progress_bar=false",
             "scheduler.num_inference_steps=3"]

def sets(keys): return [a for k in keys for a in ('--set', k)]

def test_maisi_workflow_ddpm_with_body_region(cli, tmp_path):
    prep = tmp_path / 'prep'
    for i in range(5): write_nifti((make_phantom((32, 32, 32), i)['T1'] * 800).astype(np.int16), prep / f'image{i:03d}.nii.gz', np.diag([2., 2, 2, 1]))
    work = tmp_path / 'maisi_work'
    wf = lambda *a: cli('prod9-maisi-workflow', *a)
    r = wf('setup', '--data_path', prep, '--work_dir', work, '--maisi_version', 'maisi3d-ddpm', '--body_region', 'head_neck', '--epochs', 2, '--no_amp')
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'prod9-maisi-workflow train-vae' in r.stdout and 'prod9-maisi-workflow infer' in r.stdout      # the next steps, printed
    r = wf('train-vae', '--work-dir', work, *sets(TINY_VAE)); assert r.returncode == 0, r.stderr[-3000:]
    assert (work / 'models' / 'autoencoder.safetensors').is_file()
    r = wf('embed', '--work-dir', work); assert r.returncode == 0, r.stderr[-3000:]
    embs = sorted((work / 'embedding').glob('*.nii.gz'))
    assert [p.name for p in embs] == [f'image{i:03d}.nii.gz' for i in range(5)]
    assert nib.load(embs[0]).shape == (8, 8, 8, 4)
    for p in embs: p.with_name(p.name + '.json').unlink()
    r = wf('setup', '--data_path', prep, '--work_dir', work, '--create_json_only'); assert r.returncode == 0, r.stderr[-3000:]
    meta = json.loads((work / 'embedding' / 'image000.nii.gz.json').read_text())
    assert meta == {'dim': [32, 32, 32], 'spacing': [2.0, 2.0, 2.0], 'top_region_index': [1, 0, 0, 0], 'bottom_region_index': [1, 0, 0, 0]}
    r = wf('train', '--work-dir', work, *sets(TINY_UNET)); assert r.returncode == 0, r.stderr[-3000:]
    assert (work / 'models' / 'diffusion_model.ckpt').is_file() and (work / 'models' / 'diffusion' / 'best.ckpt').is_file()
    r = wf('infer', '--work-dir', work, '--num-samples', 2, '--body-region', 'chest')
    assert r.returncode == 0, r.stderr[-3000:]
    out = sorted(p.name for p in (work / 'output').glob('*.nii.gz'))
    assert out == ['synthetic_001.nii.gz', 'synthetic_002.nii.gz']
    img = nib.load(work / 'output' / 'synthetic_001.nii.gz')
    assert img.shape == (32, 32, 32) and np.allclose(np.linalg.norm(img.affine[:3, :3], axis=0), 2.0)
    assert {'dataroot', 'embedding', 'models', 'output', 'datalist.json', 'config_maisi_diff_model.yaml'} <= {p.name for p in work.iterdir()}
    r = wf('infer', '--work-dir', work, '--body-region', 'pelvis')
    assert r.returncode == 1 and "unknown body region 'pelvis'" in r.stderr
    r = wf('train', '--work-dir', work)                       # a second train into the same run is refused, naming --resume / --overwrite
    assert r.returncode == 1 and '--resume' in r.stderr

def test_setup_with_nvidias_released_autoencoder(cli, tmp_path):
    """Issue 33: `setup --weights-dir` with the bundle's `autoencoder_epoch273.pt` (a raw AutoencoderKlMaisi state dict at the release's
    full width, random weights here), then `embed`: each embedding is that network's latent mean for its volume, normalised as the release
    normalises MR (percentiles 0 to 99.5, `release_intensity_transform('mri')`: these volumes are not CT in Hounsfield units)."""
    import torch
    from monai.apps.generation.maisi.networks.autoencoderkl_maisi import AutoencoderKlMaisi
    from prod9.diffusion.pretrained import RELEASE_NETWORKS, release_intensity_transform
    from prod9.data import volume_transforms
    prep, weights, work = tmp_path / 'prep', tmp_path / 'weights', tmp_path / 'work'
    for i in range(2): write_nifti((make_phantom((32, 32, 32), i)['T1'] * 800).astype(np.int16), prep / f'image{i:03d}.nii.gz', np.diag([2., 2, 2, 1]))
    torch.manual_seed(0)
    release = AutoencoderKlMaisi(**RELEASE_NETWORKS['maisi-vae']['model'], norm_eps=1e-6, num_splits=1).eval()
    weights.mkdir(); torch.save(release.state_dict(), weights / 'autoencoder_epoch273.pt')
    wf = lambda *a: cli('prod9-maisi-workflow', *map(str, a))
    r = wf('setup', '--data_path', prep, '--work_dir', work, '--weights-dir', tmp_path / 'empty_missing')
    assert r.returncode == 1 and 'not a folder' in r.stderr
    (tmp_path / 'empty').mkdir()
    r = wf('setup', '--data_path', prep, '--work_dir', work, '--weights_dir', tmp_path / 'empty')
    assert r.returncode == 1 and 'autoencoder_epoch273.pt' in r.stderr and 'nvidia/NV-Generate-CT' in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = wf('setup', '--data_path', prep, '--work_dir', work, '--weights_dir', weights, '--num_splits', 1, '--no_amp')
    assert r.returncode == 0, r.stderr[-3000:]
    assert "NCLS v1 licence" in r.stdout and 'train-vae' not in r.stdout          # the licence named; no VAE to train
    assert (work / 'models' / 'autoencoder_epoch273.safetensors').is_file()
    r = wf('embed', '--work-dir', work); assert r.returncode == 0, r.stderr[-3000:]
    assert 'intensity: mri' in r.stdout
    load = volume_transforms(None, False, scale=False)
    for i in range(2):
        x = torch.as_tensor(release_intensity_transform('mri')(load({'image': str(work / 'dataroot' / f'image{i:03d}.nii.gz')}))['image'])[None].float()
        with torch.no_grad(): mu = release.encode(x)[0][0]
        emb = np.moveaxis(nib.load(work / 'embedding' / f'image{i:03d}.nii.gz').get_fdata(dtype=np.float32), -1, 0)
        np.testing.assert_allclose(emb, mu.numpy(), atol=1e-5)
