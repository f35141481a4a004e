"""Both pipelines in 2D, end to end, from the packaged 2-D phantom configs (issue 21): MaskGiT stage 1 → 2 → 3 and MAISI VAE →
diffusion → ControlNet, each stage reading what the one before exported, then generation. Only sizes and epochs are overridden.
Every stage trains with `compile.enabled` (the `eager` backend: Dynamo traces the networks, no compiler is needed), and the diffusion
stage once more with the DDPM strategy, so each strategy the README names trains compiled (issue 36, item 1)."""
import numpy as np, nibabel as nib

SMALL = ["data.num_cases=6", "data.shape=[32, 32, 16]", "data.roi_size=[32, 32]", "data.slices_per_volume=2", "data.batch_size=4",
         "sliding_window.roi_size=[32, 32]", "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "trainer.precision=32-true"]
COMPILED = ["compile.enabled=true", "compile.backend=eager"]
SAMPLED = ["validation_samples.every_n_validations=1", "validation_samples.num_samples=1"]      # the generative stages (issue 36, item 8)
WIDTH = {
    'prod9-train-autoencoder': ["model.channels=[8, 8, 8]"],
    'prod9-train-transformer': ["model.hidden_dim=32", "model.num_layers=2", "model.num_heads=4", "sampler.steps=3", "validation.num_samples=0"],
    'prod9-train-maskgit-controlnet': ["controlnet.num_layers=1", "controlnet.embed_channels=[8]", "sampler.steps=3", "validation.num_samples=0"],
    'prod9-train-maisi-vae': ["model.num_channels=[8, 8, 8]"],
    'prod9-train-maisi-diffusion': ["model.num_channels=[8, 8]", "model.num_head_channels=8", "scheduler.num_inference_steps=3"],
    'prod9-train-maisi-controlnet': [],
}

def test_2d_configs_end_to_end(cli, tmp_path):
    env = {'PROD9_OUTPUT_DIR': str(tmp_path / 'outputs')}
    def run(prog, *args):
        sets = [a for kv in SMALL + (WIDTH[prog] + COMPILED + (SAMPLED if 'autoencoder' not in prog and 'vae' not in prog else []) if args[0] == 'train' else []) for a in ('--set', kv)]
        r = cli(prog, *map(str, args), *sets, env=env); assert r.returncode == 0, f"{prog} {args[:3]}: {r.stderr[-3000:]}"
    out = tmp_path / 'outputs'
    run('prod9-train-autoencoder', 'train', '--config', 'maskgit/phantoms_2d/stage1/base.yaml')
    run('prod9-train-transformer', 'train', '--config', 'maskgit/phantoms_2d/stage2/base.yaml')
    run('prod9-train-maskgit-controlnet', 'train', '--config', 'maskgit/phantoms_2d/stage3/controlnet.yaml')
    run('prod9-train-maskgit-controlnet', 'generate', '--config', 'maskgit/phantoms_2d/stage3/controlnet.yaml',
        '--checkpoint', out / 'maskgit_phantoms_2d_stage3' / 'last.ckpt', '--output', tmp_path / 'mg', '--num-samples', 1, '--modality', 'FLAIR')
    run('prod9-train-maisi-vae', 'train', '--config', 'maisi/phantoms_2d/vae.yaml')
    run('prod9-train-maisi-diffusion', 'train', '--config', 'maisi/phantoms_2d/diffusion.yaml')
    run('prod9-train-maisi-controlnet', 'train', '--config', 'maisi/phantoms_2d/controlnet.yaml')
    run('prod9-train-maisi-diffusion', 'train', '--config', 'maisi/phantoms_2d/diffusion.yaml', '--output-dir', tmp_path / 'ddpm',
        '--set', 'scheduler.strategy=ddpm', '--set', f'export_path={tmp_path}/ddpm.ckpt')
    # every generative stage wrote its validation samples: NIfTI files and a montage, with the masks the controlled ones were made for
    for folder, want in (('maskgit_phantoms_2d_stage2', None), ('maskgit_phantoms_2d_stage3', 'mask'), ('maisi_phantoms_2d_diffusion', None),
                      ('maisi_phantoms_2d_controlnet', 'mask'), (tmp_path / 'ddpm', None)):
        steps = sorted((out / folder / 'validation_samples').iterdir())
        assert len(steps) == 1, (folder, steps)
        files = sorted(q.name for q in steps[0].iterdir())
        assert 'samples.png' in files and len([f for f in files if f.startswith('sample_01_')]) == (2 if want else 1), (folder, files)
        if want: assert 'sample_01_mask.nii.gz' in files, (folder, files)
        vol = nib.load(next(steps[0].glob('sample_01_*.nii.gz'))); assert vol.shape == (32, 32), (folder, vol.shape)
    import torch
    for ck in (out / 'maskgit_phantoms_2d_stage3' / 'last.ckpt', tmp_path / 'ddpm' / 'last.ckpt'):     # compiled in place: plain keys
        assert not [k for k in torch.load(ck, weights_only=True)['state_dict'] if '_orig_mod' in k]
    run('prod9-train-maisi-controlnet', 'generate', '--config', 'maisi/phantoms_2d/controlnet.yaml',
        '--checkpoint', out / 'maisi_phantoms_2d_controlnet' / 'last.ckpt', '--output', tmp_path / 'ma', '--num-samples', 1, '--modality', 'T1ce')
    for d, name in ((tmp_path / 'mg', 'FLAIR'), (tmp_path / 'ma', 'T1ce')):
        img, mask = nib.load(d / f'sample_0001_{name}.nii.gz'), nib.load(d / 'sample_0001_mask.nii.gz')
        assert img.shape == (32, 32) and mask.shape == (32, 32) and set(np.unique(mask.get_fdata())) <= {0, 1, 2, 3}
