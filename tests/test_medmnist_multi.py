"""MedMNIST 3D with several data sets (seed 003's `dataset_name: all`, or a list) in the conditional stages (issue 21): one label space
over the data sets (`data.class_labels`), a label-conditional transformer and a conditional diffusion model trained and sampled per class."""
from pathlib import Path
import numpy as np, nibabel as nib, torch, yaml
import pytest
from prod9.data import medmnist_file, medmnist_classes

FLAGS = ['adrenalmnist3d', 'fracturemnist3d']        # the two smallest official splits: 1,584 and 1,370 volumes

@pytest.fixture(scope='module')
def mm(tmp_path_factory):
    "The two data sets in the exact MedMNIST format (official split sizes), a tiny FSQ export and a tiny MAISI VAE export."
    import medmnist
    from prod9.autoencoder.autoencoder_fsq import build_autoencoder, FSQModelConfig
    from prod9.training.autoencoder_fsq import export_autoencoder
    from prod9.autoencoder.autoencoder_maisi import MAISIVAEModelConfig, MAISIVAE
    from prod9.training.maisi_vae import export_vae
    root = tmp_path_factory.mktemp('mm'); rng = np.random.default_rng(0)
    for k, flag in enumerate(FLAGS + ['organmnist3d']):         # organmnist3d: the packaged 2-D configs' data set
        arrays = {}
        for s in ('train', 'val', 'test'):
            n = medmnist.INFO[flag]['n_samples'][s]
            imgs = np.zeros((n, 28, 28, 28), np.uint8); imgs[:, 8:20, 8:20, 8:20] = 60 + 80 * k      # the data sets differ in brightness
            arrays[f'{s}_images'], arrays[f'{s}_labels'] = imgs, rng.integers(0, len(medmnist.INFO[flag]['label']), (n, 1))
        np.savez(root / medmnist_file(flag), **arrays)
    torch.manual_seed(0)
    m = FSQModelConfig(channels=[8, 8], levels=[5, 5, 5])
    export_autoencoder(build_autoencoder(m), m, root / 'ae.safetensors')
    v = MAISIVAEModelConfig(num_channels=[8, 8], num_res_blocks=1, norm_num_groups=8, latent_channels=4)
    export_vae(MAISIVAE(**v.model_dump()), v, root / 'vae.safetensors')
    return root

# the files have the official split sizes (medmnist checks them); max_cases keeps 48 volumes per data set and split in the caches
COMMON = """
seed: 0
data: {{source: medmnist3d, data_dir: {root}, dataset_name: {flags}, class_labels: {mode}, roi_size: [28, 28, 28], batch_size: 16, max_cases: 48}}
sliding_window: {{roi_size: [28, 28, 28]}}
encode_batch_size: 64
trainer: {{max_epochs: 1, limit_train_batches: 2, limit_val_batches: 1, enable_progress_bar: false, log_every_n_steps: 1, loggers: [csv]}}
"""

def test_label_conditional_transformer_over_data_set_and_class(cli, mm, tmp_path):
    cfg = tmp_path / 's2.yaml'
    cfg.write_text(COMMON.format(root=mm, flags=FLAGS, mode='dataset_class') + f"""
output_dir: {tmp_path}/s2
autoencoder_path: {mm}/ae.safetensors
model: {{hidden_dim: 16, num_layers: 1, num_heads: 2}}
sampler: {{steps: 2}}
validation: {{num_samples: 0}}
""")
    r = cli('prod9-train-transformer', 'train', '--config', cfg); assert r.returncode == 0, r.stderr[-3000:]
    names, _ = medmnist_classes(FLAGS, 'dataset_class')
    ck = torch.load(tmp_path / 's2' / 'last.ckpt', weights_only=True)
    assert ck['hyper_parameters']['class_names'] == names and len(names) == 5          # 2 adrenal + 3 fracture classes
    assert ck['state_dict']['transformer.cond_emb.weight'].shape[0] == len(names) + 1      # one embedding per class, and the null label
    r = cli('prod9-train-transformer', 'generate', '--config', cfg, '--checkpoint', tmp_path / 's2' / 'last.ckpt', '--output', tmp_path / 'gen',
            '--num-samples', 1, '--modality', 'fracturemnist3d/displaced rib fracture')
    assert r.returncode == 0, r.stderr[-3000:]
    assert [p.name for p in (tmp_path / 'gen').glob('*.nii.gz')] == ['sample_0001_fracturemnist3d_displaced_rib_fracture.nii.gz']
    r = cli('prod9-train-transformer', 'generate', '--config', cfg, '--checkpoint', tmp_path / 's2' / 'last.ckpt', '--output', tmp_path / 'bad',
            '--modality', 'liver')
    assert r.returncode == 1 and "unknown class 'liver'" in r.stderr and 'adrenalmnist3d/normal' in r.stderr
    # a label ControlNet on it (MedMNIST has no tumour masks), on the same token cache
    s3 = write_config(tmp_path / 's3.yaml', mm, 'dataset_class', output_dir=tmp_path / 's3', autoencoder_path=mm / 'ae.safetensors',
                      transformer_path=tmp_path / 's2' / 'last.ckpt', token_cache_dir=tmp_path / 's2' / 'tokens',
                      controlnet={'control_type': 'label', 'num_layers': 1}, sampler={'steps': 2}, validation={'num_samples': 0})
    assert label_controlnet(cli, 'prod9-train-maskgit-controlnet', s3, tmp_path / 's3', tmp_path / 'cn', '--modality', 'adrenalmnist3d/hyperplasia') \
        == ['sample_0001_adrenalmnist3d_hyperplasia.nii.gz']

def write_config(path, mm, mode, **keys):
    "A config at `path`: the shared MedMNIST data block with the class `mode`, then `keys` (paths as strings)."
    keys = {k: str(v) if isinstance(v, Path) else v for k, v in keys.items()}
    path.write_text(COMMON.format(root=mm, flags=FLAGS, mode=mode) + '\n' + yaml.safe_dump(keys, sort_keys=False)); return path

def label_controlnet(cli, script, cfg, run, out, *flags) -> list:
    "Train the label ControlNet of `cfg` on its base stage's cache (no second encoding), then generate one sample: the files written."
    r = cli(script, 'train', '--config', cfg); assert r.returncode == 0, r.stderr[-3000:]
    assert 'is up to date' in r.stdout
    r = cli(script, 'generate', '--config', cfg, '--checkpoint', run / 'last.ckpt', '--output', out, '--num-samples', 1, *flags)
    assert r.returncode == 0, r.stderr[-3000:]
    return sorted(p.name for p in out.glob('*.nii.gz'))

def test_conditional_diffusion_one_class_per_data_set(cli, mm, tmp_path):
    cfg = tmp_path / 'd.yaml'
    cfg.write_text(COMMON.format(root=mm, flags=FLAGS, mode='dataset') + f"""
output_dir: {tmp_path}/d
vae_path: {mm}/vae.safetensors
model: {{num_channels: [8, 8], num_res_blocks: 1, attention_levels: [false, false], num_head_channels: [0, 8], norm_num_groups: 8, conditional: true}}
scheduler: {{num_inference_steps: 2}}
""")
    r = cli('prod9-train-maisi-diffusion', 'train', '--config', cfg); assert r.returncode == 0, r.stderr[-3000:]
    r = cli('prod9-train-maisi-diffusion', 'generate', '--config', cfg, '--checkpoint', tmp_path / 'd' / 'last.ckpt', '--output', tmp_path / 'gen',
            '--num-samples', 1)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / 'gen').glob('*.nii.gz')) == [f'sample_0001_{f}.nii.gz' for f in FLAGS]
    assert nib.load(tmp_path / 'gen' / 'sample_0001_adrenalmnist3d.nii.gz').shape == (28, 28, 28)
    # a label ControlNet on it, reading the same latent cache
    cn = write_config(tmp_path / 'cn.yaml', mm, 'dataset', output_dir=tmp_path / 'cn', vae_path=mm / 'vae.safetensors',
                      diffusion_path=tmp_path / 'd' / 'last.ckpt', latent_cache_dir=tmp_path / 'd' / 'latents', controlnet={'control_type': 'label'})
    assert label_controlnet(cli, 'prod9-train-maisi-controlnet', cn, tmp_path / 'cn', tmp_path / 'cg', '--modality', 'fracturemnist3d',
                            '--num-inference-steps', 2) == ['sample_0001_fracturemnist3d.nii.gz']

def test_packaged_2d_configs(cli, mm, tmp_path):
    "The packaged MedMNIST 2-D configs (axial slices at 28 x 28): stage 1 → stage 2 and VAE → diffusion, then generation; sizes shrunk."
    env = {'MEDMNIST_DATA_DIR': str(mm), 'PROD9_OUTPUT_DIR': str(tmp_path / 'outputs')}
    small = ['data.slices_per_volume=1', 'trainer.max_epochs=1', 'trainer.limit_train_batches=2', 'trainer.limit_val_batches=1',
             'trainer.enable_progress_bar=false']
    width = {'prod9-train-autoencoder': ['model.channels=[8, 8, 8]'], 'prod9-train-transformer': ['model.hidden_dim=32', 'model.num_layers=1', 'validation.num_samples=0'],
             'prod9-train-maisi-vae': ['model.num_channels=[8, 8]'], 'prod9-train-maisi-diffusion': ['model.num_channels=[8, 8]', 'model.num_head_channels=8']}
    def run(prog, *a):
        sets = [x for kv in small + (width[prog] if a[0] == 'train' else []) for x in ('--set', kv)]
        r = cli(prog, *map(str, a), *sets, env=env); assert r.returncode == 0, f"{prog} {a[:3]}: {r.stderr[-3000:]}"
    run('prod9-train-autoencoder', 'train', '--config', 'maskgit/medmnist_2d/stage1/base.yaml')
    run('prod9-train-transformer', 'train', '--config', 'maskgit/medmnist_2d/stage2/base.yaml')
    run('prod9-train-transformer', 'generate', '--config', 'maskgit/medmnist_2d/stage2/base.yaml', '--checkpoint', tmp_path / 'outputs' / 'medmnist_2d_transformer.ckpt',
        '--output', tmp_path / 'g1', '--num-samples', 1, '--modality', 'liver', '--steps', 2)
    run('prod9-train-maisi-vae', 'train', '--config', 'maisi/medmnist_2d/vae.yaml')
    run('prod9-train-maisi-diffusion', 'train', '--config', 'maisi/medmnist_2d/diffusion.yaml')
    run('prod9-train-maisi-diffusion', 'generate', '--config', 'maisi/medmnist_2d/diffusion.yaml', '--checkpoint', tmp_path / 'outputs' / 'medmnist_2d_diffusion.ckpt',
        '--output', tmp_path / 'g2', '--num-samples', 1, '--modality', 'spleen', '--num-inference-steps', 2)
    assert nib.load(tmp_path / 'g1' / 'sample_0001_liver.nii.gz').shape == (28, 28)
    assert nib.load(tmp_path / 'g2' / 'sample_0001_spleen.nii.gz').shape == (28, 28)
