"""The seeds' config spellings and key names (issue 23): each is accepted, and its value reaches the code that uses it."""
import textwrap
import pytest
from prod9.config import load_config, KEY_ALIASES
from prod9.training.engine import make_trainer
from prod9.training.autoencoder_fsq import AutoencoderStageConfig, AutoencoderFSQLightning
from prod9.training.maisi_vae import MAISIVAEStageConfig
from prod9.training.transformer import TransformerStageConfig, MaskGiTLightning
from prod9.autoencoder.inference import AutoencoderInferenceWrapper
from prod9.autoencoder.autoencoder_fsq import build_autoencoder, FSQModelConfig

def cfg(tmp_path, text, schema):
    p = tmp_path / 'seed.yaml'; p.write_text(textwrap.dedent(text)); return load_config(p, schema, env={})

@pytest.mark.parametrize('cmd,name', [
    ('prod9-train-autoencoder', 'src/prod9/configs/maskgit/brats/stage1/base.yaml'),        # seed 000
    ('prod9-train-autoencoder', 'configs/maskgit/brats/stage1/base.yaml'),                  # seed 001
    ('prod9-train-transformer', 'configs/maskgit/brats/stage2_label/base.yaml'),            # seed 001's name for stage2/base.yaml
    ('prod9-train-maskgit-controlnet', 'configs/maskgit/brats/stage3/base.yaml'),           # seed 001's name for stage3/controlnet.yaml
    ('prod9-train-maisi-vae', 'configs/maisi/autoencoder/brats_vae.yaml'),
    ('prod9-train-transformer', 'src/prod9/configs/maskgit/medmnist3d/stage2/ffl.yaml'),    # seed 003
])
def test_seed_config_spellings(cli, tmp_path, cmd, name):
    r = cli(cmd, 'train', '--config', name, '--print-config', env={'BRATS_DATA_DIR': str(tmp_path), 'MEDMNIST_DATA_DIR': str(tmp_path)})
    assert r.returncode == 0 and 'output_dir:' in r.stdout, r.stderr[-2000:]

def test_sampler_keys_reach_the_sampler(tmp_path):
    c = cfg(tmp_path, "autoencoder_path: x\nsampler: {num_steps: 5, scheduler_type: log2}\n", TransformerStageConfig)
    m = MaskGiTLightning(c.model_dump(), 125, [2, 2, 2], ['T1', 'T2'])
    s = m.sampler()
    assert (s.steps, s.schedule) == (5, 'log2')

def test_vae_export_path_is_where_the_export_goes(tmp_path):
    c = cfg(tmp_path, f"vae_export_path: {tmp_path / 'maisi_vae_final.safetensors'}\n", MAISIVAEStageConfig)
    assert c.export_file == tmp_path / 'maisi_vae_final.safetensors'

def test_trainer_keys_reach_lightning(tmp_path):
    from lightning.pytorch.profilers import SimpleProfiler
    c = cfg(tmp_path, """
        trainer:
          max_epochs: 3
          logging: {limit_train_batches: 10, limit_val_batches: 2}
          profiler: simple
          detect_anomaly: true
        """, AutoencoderStageConfig)
    t = make_trainer(c, tmp_path / 'run')
    assert (t.limit_train_batches, t.limit_val_batches) == (10, 2)
    assert isinstance(t.profiler, SimpleProfiler) and t._detect_anomaly

def test_sliding_window_mean_is_equal_weight_blending(tmp_path):
    c = cfg(tmp_path, "sliding_window: {roi_size: [16, 16, 16], mode: mean}\n", AutoencoderStageConfig)
    w = AutoencoderInferenceWrapper(build_autoencoder(FSQModelConfig(channels=[8, 8], levels=[5, 5, 5])), c.sliding_window)
    assert w._inferer(w.roi).mode == 'constant'

def test_source_and_target_modality_indices(tmp_path):
    "seed 001's training.source_modalities: [0, 1, 2] / target_modality: 3 are the in-context classes T1, T1ce, T2 -> FLAIR."
    from prod9.data import resolve_classes
    c = cfg(tmp_path, "autoencoder_path: x\ntraining: {source_modalities: [0, 1, 2], target_modality: 3, lr: 0.001}\n", TransformerStageConfig)
    names = ['T1', 'T1ce', 'T2', 'FLAIR']
    assert resolve_classes(c.in_context.source_modalities, names, 'k') == [0, 1, 2]
    assert resolve_classes(c.in_context.target_modalities, names, 'k') == [3] and c.training.lr == 0.001

def test_loss_type_ffl_turns_on_the_focal_frequency_loss(tmp_path):
    c = cfg(tmp_path, "model: {channels: [8, 8], levels: [5, 5, 5]}\nloss: {loss_type: ffl, focal_frequency: {alpha: 1.0}}\n", AutoencoderStageConfig)
    assert c.loss.focal_frequency.weight == 1.0
    assert AutoencoderFSQLightning(c.model_dump()).ffl is not None

def test_every_alias_is_documented():
    assert all(a.note for a in KEY_ALIASES)

def test_condition_both_is_mask_and_label(tmp_path):
    "seed 000's MAISI ControlNet key `condition: both` is control_type mask+label, which sizes the ControlNet's condition input."
    from prod9.training.controlnet import ControlNetStageConfig
    from prod9.controlnet.controlnet_model import condition_channels
    c = cfg(tmp_path, "vae_path: x\ndiffusion_path: y\ncondition: both\n", ControlNetStageConfig)
    assert c.controlnet.control_type == 'mask+label'
    assert condition_channels(c.controlnet) == len(c.controlnet.mask_classes)

def test_callbacks_section_reaches_the_trainer(tmp_path):
    "seed 000's `callbacks:` (checkpointing, early stopping) become Lightning's ModelCheckpoint and EarlyStopping."
    c = cfg(tmp_path, "callbacks: {checkpoint: {save_top_k: 3}, early_stopping: {patience: 4, min_delta: 0.01}}\n", AutoencoderStageConfig)
    t = make_trainer(c, tmp_path / 'run', monitor='val_l1')
    assert t.checkpoint_callback.save_top_k == 3 and t.checkpoint_callback.monitor == 'val_l1'
    es = t.early_stopping_callback
    assert es is not None and (es.patience, es.monitor, abs(es.min_delta)) == (4, 'val_l1', 0.01)

def test_modality_processor_section_builds_a_patched_in_context_transformer(tmp_path):
    "seed 001's modality_processor: patch_size 2 and max_context_length 8 reach the network; num_classes and latent_dim are checked."
    from prod9.config import ConfigError
    text = """
        autoencoder_path: x
        model: {transformer_type: single_stream, hidden_dim: 32, num_layers: 1, num_heads: 2}
        modality_processor: {latent_dim: 5, hidden_dim: 32, num_classes: 4, patch_size: 2, max_context_length: 8}
        """
    c = cfg(tmp_path, text, TransformerStageConfig)
    info = {'vocab_size': 15360, 'grid': [4, 4, 4], 'class_names': ['T1', 'T1ce', 'T2', 'FLAIR'], 'affine': None, 'levels': [8, 8, 8, 6, 5]}
    net = MaskGiTLightning.from_cache(c, info).transformer
    assert net.processor.patch_size == 2 and net.processor.max_context_length == 8 and net.processor.patcher is not None
    import torch
    x, _, start = net.processor(torch.zeros(1, 4, 4, 4, dtype=torch.long), torch.tensor([3]))
    assert x.shape[1] == 1 + 8                                     # label token + 2x2x2 patches of the 4x4x4 grid
    with pytest.raises(ConfigError, match='model.num_classes: 4 classes configured, but the data has 2'):
        MaskGiTLightning.from_cache(c, {**info, 'class_names': ['T1', 'T2']})
    with pytest.raises(ConfigError, match=r'model.latent_dim: latent_dim 5 configured, but the autoencoder quantises 3 dimensions'):
        MaskGiTLightning.from_cache(c, {**info, 'levels': [8, 8, 8]})

def test_data_cache_dir_keeps_preprocessed_volumes_on_disk(tmp_path, monkeypatch):
    "seed 000's `data.cache_dir: ${CACHE_DIR:/tmp/cache}`: preprocessed volumes go to disk (MONAI PersistentDataset) and are read back from there; stage 2's caches go under it."
    import numpy as np, nibabel as nib
    from prod9.data import datamodule_from_config
    from prod9.phantoms import make_phantom
    from prod9.training.diffusion import DiffusionStageConfig
    scans = tmp_path / 'scans'; scans.mkdir()
    for i in range(3): nib.save(nib.Nifti1Image(make_phantom((24, 24, 24), i)['T1'].astype(np.float32), np.eye(4)), scans / f'a{i}.nii.gz')
    monkeypatch.setenv('CACHE_DIR', str(tmp_path / 'cache'))
    p = tmp_path / 'seed.yaml'
    p.write_text(f"autoencoder_path: x\ndata: {{source: nifti_folder, data_dir: {scans}, roi_size: [16, 16, 16], val_fraction: 0.34, "
                 "cache_dir: '${CACHE_DIR:/tmp/cache}'}\n")
    c = load_config(p, TransformerStageConfig)
    assert c.data.cache_dir == str(tmp_path / 'cache') and c.cache_dir == tmp_path / 'cache' / 'tokens'
    dm = datamodule_from_config(c.data); dm.setup()
    first = dm.datasets['val'][0]['image']
    assert len(list((tmp_path / 'cache' / 'volumes').glob('*.pt'))) == 1          # the validation volume, preprocessed
    dm2 = datamodule_from_config(c.data); dm2.setup()
    assert (dm2.datasets['val'][0]['image'] == first).all() and len(list((tmp_path / 'cache' / 'volumes').glob('*.pt'))) == 1   # read back
    val_file = dm2.datasets['val'].data[0]['image']
    nib.save(nib.Nifti1Image(np.flip(nib.load(val_file).get_fdata(), 0).astype(np.float32), np.eye(4)), val_file)     # edited in place
    dm3 = datamodule_from_config(c.data); dm3.setup()
    assert not (dm3.datasets['val'][0]['image'] == first).all() and len(list((tmp_path / 'cache' / 'volumes').glob('*.pt'))) == 2
    p.write_text(f"vae_path: x\ndata: {{source: phantoms, cache_dir: {tmp_path / 'c2'}}}\n")
    assert load_config(p, DiffusionStageConfig).cache_dir == tmp_path / 'c2' / 'latents'

def test_seed_003_lpips_snippet_is_medicalnet_from_a_local_file(tmp_path):
    "seed 003's LPIPS block, as written: accepted; without a local weights file the stage says which file it needs; with one it builds."
    import torch
    from monai.networks.nets import resnet10
    from seed_commands import seed_blocks, seed_file
    snippet = next(t for lang, t in seed_blocks(seed_file('003')) if lang == 'yaml' and 'medicalnet_resnet10_23datasets' in t)
    c = cfg(tmp_path, snippet, AutoencoderStageConfig)
    assert (c.loss.perceptual.weight, c.loss.perceptual.network_type) == (0.1, 'medicalnet_resnet10_23datasets')
    with pytest.raises(ValueError, match="weights_path to MedicalNet's resnet_10_23dataset.pth"): AutoencoderFSQLightning(c.model_dump())
    w = tmp_path / 'resnet_10_23dataset.pth'
    torch.save({'state_dict': {f'module.{k}': v for k, v in resnet10(spatial_dims=3, n_input_channels=1, shortcut_type='B', bias_downsample=False).state_dict().items()}}, w)
    c2 = cfg(tmp_path, snippet.replace('network_type:', f'weights_path: {w}\n    network_type:'), AutoencoderStageConfig)
    assert type(AutoencoderFSQLightning(c2.model_dump()).perceptual).__name__ == 'MedicalNetPerceptual'
