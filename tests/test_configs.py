"""Every config shipped in prod9/configs validates; errors name file and key."""
from pathlib import Path
import pytest
from prod9.config import list_configs, config_path, load_config, StageConfig, ConfigError, CONFIG_DIR

ENV = {'BRATS_DATA_DIR': '/data/brats', 'MEDMNIST_DATA_DIR': '/data/medmnist', 'NIFTI_DATA_DIR': '/data/nifti'}

def is_base(name:str) -> bool:
    "A packaged base that is not a stage config of its own: a data set (`data/`) or the tokens MaskGiT's stages 2 and 3 share."
    return name.startswith('data/') or name.endswith('/tokens.yaml')

def test_configs_are_shipped():
    names = list_configs()
    assert 'data/phantoms.yaml' in names and len(names) >= 4
    assert CONFIG_DIR.is_dir() and (CONFIG_DIR.parent / '__init__.py').exists()

@pytest.mark.parametrize('name', [n for n in list_configs() if is_base(n)])
def test_data_configs_validate(name):
    cfg = load_config(config_path(name), schema_for(name.replace('tokens.yaml', 'stage2/base.yaml')) if name.endswith('tokens.yaml') else StageConfig, env=ENV)
    assert cfg.data.source in ('phantoms', 'brats', 'medmnist3d', 'nifti_folder')

def test_required_variable_error_names_file_and_key():
    with pytest.raises(ConfigError) as e: load_config(config_path('data/brats.yaml'), StageConfig, env={})
    msg = str(e.value)
    assert msg.startswith(str(config_path('data/brats.yaml'))) and 'data.data_dir: environment variable BRATS_DATA_DIR is not set' in msg

def schema_for(name:str):
    "The pydantic schema that validates a packaged config, from its place in prod9/configs."
    if name.startswith('maskgit/') and '/stage1/' in name:
        from prod9.training.autoencoder_fsq import AutoencoderStageConfig; return AutoencoderStageConfig
    if name.startswith('maskgit/') and '/stage2/' in name:
        from prod9.training.transformer import TransformerStageConfig; return TransformerStageConfig
    if name.startswith('maskgit/') and '/stage3/' in name:
        from prod9.training.maskgit_controlnet import MaskGiTControlNetStageConfig; return MaskGiTControlNetStageConfig
    if name.startswith('medgen/'):                       # MedGen's modes: prod9-train-maisi-diffusion
        from prod9.training.diffusion import DiffusionStageConfig; return DiffusionStageConfig
    if name.startswith('maisi/'):
        stem = name.rsplit('/', 1)[-1]
        if 'controlnet' in stem:
            from prod9.training.controlnet import ControlNetStageConfig; return ControlNetStageConfig
        if 'diffusion' in stem:
            from prod9.training.diffusion import DiffusionStageConfig; return DiffusionStageConfig
        if 'vae' in stem:
            from prod9.training.maisi_vae import MAISIVAEStageConfig; return MAISIVAEStageConfig
    return None

STAGE_CONFIGS = [n for n in list_configs() if not is_base(n)]

def test_every_config_has_a_schema():
    assert [n for n in STAGE_CONFIGS if schema_for(n) is None] == []
    for name in ('maskgit/phantoms/stage1/base.yaml', 'maskgit/brats/stage1/base.yaml', 'maskgit/brats/stage1/ffl.yaml',
                 'maskgit/medmnist3d/stage1/base.yaml', 'maskgit/medmnist3d/stage1/ffl.yaml', 'maskgit/medmnist3d/stage1/large.yaml',
                 'maskgit/phantoms/stage2/base.yaml', 'maskgit/phantoms/stage2/in_context.yaml', 'maskgit/brats/stage2/base.yaml',
                 'maskgit/brats/stage2/in_context.yaml', 'maskgit/medmnist3d/stage2/base.yaml', 'maskgit/medmnist3d/stage2/ffl.yaml',
                 'maskgit/medmnist3d/stage2/large.yaml', 'maisi/autoencoder/brats_vae.yaml', 'maisi/autoencoder/medmnist3d_vae.yaml',
                 'maisi/diffusion/brats_diffusion.yaml', 'maisi/diffusion/medmnist3d_diffusion.yaml', 'maisi/diffusion/brats_controlnet.yaml',
                 'maisi/phantoms/vae.yaml', 'maisi/phantoms/diffusion.yaml', 'maisi/phantoms/diffusion_ddpm.yaml', 'maisi/phantoms/controlnet.yaml',
                 'maskgit/phantoms/stage3/controlnet.yaml', 'maskgit/brats/stage3/controlnet.yaml',
                 *[f'{p}/{d}_2d/{s}' for p, ss in (('maskgit', ('stage1/base.yaml', 'stage2/base.yaml', 'stage3/controlnet.yaml')),
                                                   ('maisi', ('vae.yaml', 'diffusion.yaml', 'controlnet.yaml')),
                                                   ('medgen', ('seg.yaml', 'bravo.yaml', 'dual.yaml'))) for d in ('phantoms', 'brats') for s in ss],
                 'maskgit/medmnist_2d/stage1/base.yaml', 'maskgit/medmnist_2d/stage2/base.yaml', 'maisi/medmnist_2d/vae.yaml', 'maisi/medmnist_2d/diffusion.yaml'):
        assert name in STAGE_CONFIGS, name

@pytest.mark.parametrize('name', STAGE_CONFIGS)
def test_stage_configs_validate_and_build(name):
    schema = schema_for(name)
    cfg = load_config(config_path(name), schema, env=ENV)
    if schema.__name__ in ('AutoencoderStageConfig', 'MAISIVAEStageConfig'):
        from prod9.autoencoder.autoencoder_fsq import build_autoencoder
        from prod9.autoencoder.autoencoder_maisi import MAISIVAE
        ae = build_autoencoder(cfg.model) if schema.__name__ == 'AutoencoderStageConfig' else MAISIVAE(**cfg.model.model_dump())
        roi = cfg.data.roi_size
        assert all(r % ae.downsample_factor == 0 for r in roi), f"{name}: roi {roi} not divisible by {ae.downsample_factor}"
        # the window is the training crop or a whole multiple of it (larger windows: fewer seams on whole volumes)
        assert all(w % r == 0 for w, r in zip(cfg.sliding_window.roi_size, roi)), f"{name}: window {cfg.sliding_window.roi_size} vs crop {roi}"
    if schema.__name__ == 'TransformerStageConfig':
        from prod9.data import resolve_classes
        from prod9.training.cache import class_names
        assert cfg.model.hidden_dim % cfg.model.num_heads == 0
        if cfg.data.source in ('phantoms', 'brats'):
            names = class_names(cfg.data)
            resolve_classes(cfg.in_context.source_modalities, names, 'in_context.source_modalities')
            resolve_classes(cfg.in_context.target_modalities, names, 'in_context.target_modalities')
        stage1 = name.replace('/stage2/', '/stage1/').replace('in_context', 'base')
        if stage1 in STAGE_CONFIGS:    # the stage-2 config reads the export its stage-1 config writes
            s1 = load_config(config_path(stage1), schema_for(stage1), env=ENV)
            assert str(s1.export_file) == cfg.autoencoder_path, (stage1, s1.export_file, cfg.autoencoder_path)
    if schema.__name__ == 'DiffusionStageConfig':
        from prod9.diffusion.diffusion_model import build_unet
        assert build_unet(cfg.model, 3, 4, 4) is not None          # the architecture builds (4 latent channels, 4 classes)
        assert cfg.scheduler.num_inference_steps <= cfg.scheduler.num_train_timesteps
    if schema.__name__ == 'MaskGiTControlNetStageConfig':    # reads stage 2's checkpoint and token cache, with stage 2's data
        s2name = name.replace('/stage3/controlnet', '/stage2/base')
        s2 = load_config(config_path(s2name), schema_for(s2name), env=ENV)
        if s2.export_path:      # stage 2's fixed copy of its best checkpoint, whatever --output-dir it was trained with
            assert cfg.transformer_path == s2.export_path, (cfg.transformer_path, s2.export_path)
        else:
            assert cfg.transformer_path.startswith(s2.output_dir) and str(cfg.cache_dir) == str(s2.cache_dir), (cfg.transformer_path, s2.output_dir)
        assert cfg.transformer_path.endswith('.ckpt') and cfg.data == s2.data and cfg.autoencoder_path == s2.autoencoder_path
        assert cfg.controlnet.num_layers <= s2.model.num_layers
    if schema.__name__ == 'ControlNetStageConfig':
        assert cfg.diffusion_path.endswith('.ckpt') and cfg.vae_path.endswith('.safetensors')
        diff_cfgs = [n for n in STAGE_CONFIGS if n.startswith('maisi/') and schema_for(n).__name__ == 'DiffusionStageConfig']
        written = {str(load_config(config_path(n), schema_for(n), env=ENV).export_path) for n in diff_cfgs}
        written |= {str(Path(load_config(config_path(n), schema_for(n), env=ENV).output_dir) / 'best.ckpt') for n in diff_cfgs}
        assert cfg.diffusion_path in written, (cfg.diffusion_path, written)     # a file a diffusion config writes
    if name.startswith('maisi/') and schema.__name__ != 'MAISIVAEStageConfig':   # reads the export its VAE config writes
        vae_cfgs = [n for n in STAGE_CONFIGS if n.startswith('maisi/') and schema_for(n).__name__ == 'MAISIVAEStageConfig']
        exports = {str(load_config(config_path(n), schema_for(n), env=ENV).export_file) for n in vae_cfgs}
        assert cfg.vae_path in exports, (name, cfg.vae_path, exports)

ENV_B = {'BRATS_DATA_DIR': '/b/brats', 'MEDMNIST_DATA_DIR': '/b/medmnist', 'NIFTI_DATA_DIR': '/b/nifti', 'PROD9_OUTPUT_DIR': '/o', 'NUM_WORKERS': '3',
         'CACHE_RATE': '0.5', 'MAX_EPOCHS': '7', 'PRECISION': '16-mixed', 'MEDMNIST_FLAG': 'nodulemnist3d'}

def test_packaged_configs_are_composed_and_restate_nothing(tmp_path):
    """Every value a packaged file writes changes what it resolves to (it is neither a default nor what its bases say), under the
    variables' defaults and under other values; every stage config builds on a base; the whole set stays small."""
    from prod9.config import parse_yaml, _leaf_keys, CONFIG_DIR
    import copy, yaml
    def without(d, key):
        d = copy.deepcopy(d); node, parts = d, key.split('.')
        trail = []
        for q in parts[:-1]: trail.append((node, q)); node = node[q]
        del node[parts[-1]]
        for parent, q in reversed(trail):          # a section left empty goes too: `early_stopping: {patience: 10}` switches it on
            if parent[q] == {}: del parent[q]
        return d
    restated = []
    for name in STAGE_CONFIGS:
        src = config_path(name); data = parse_yaml(src.read_text())
        assert 'base' in data, f"{name}: builds on no base (a data set under data/, or a sibling)"
        schema, want = schema_for(name), [load_config(src, schema_for(name), env=e).model_dump(mode='json') for e in (ENV, ENV_B)]
        for key in _leaf_keys({k: v for k, v in data.items() if k != 'base'}):
            trial = src.parent / f'.trial_{src.name}'      # beside the original: its relative bases resolve the same way
            try:
                trial.write_text(yaml.safe_dump(without(data, key)))
                if [load_config(trial, schema, env=e).model_dump(mode='json') for e in (ENV, ENV_B)] == want: restated.append(f"{name}: {key}")
            except ConfigError: pass            # the config needs the value: it is not restated
            finally: trial.unlink(missing_ok=True)
    assert restated == [], restated
    total = sum(len(f.read_text().splitlines()) for f in CONFIG_DIR.rglob('*.yaml'))
    assert total <= 900, f"the packaged configs have {total} lines"

def test_packaged_configs_speak_of_prod9():
    from prod9.config import CONFIG_DIR
    import re
    hits = [f"{f.relative_to(CONFIG_DIR)}:{i + 1}" for f in CONFIG_DIR.rglob('*.yaml') for i, ln in enumerate(f.read_text().splitlines())
            if re.search(r'\bseeds?\b', ln, re.I) and not re.match(r'\s*seed:', ln)]
    assert hits == [], hits
