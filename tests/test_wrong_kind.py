"""Every command that takes a file refuses one of the wrong kind: exit 1 and one line on stderr that names the file, what it is and
what was expected (issue: a stage-2 or VAE file given to the autoencoder used to keep random weights and exit 0)."""
import pytest, torch
from prod9.autoencoder.autoencoder_fsq import FSQModelConfig, build_autoencoder
from prod9.autoencoder.autoencoder_maisi import MAISIVAEModelConfig, MAISIVAE
from prod9.training.autoencoder_fsq import export_autoencoder
from prod9.training.maisi_vae import export_vae
from prod9.training.engine import AtomicCheckpointIO
from prod9.training.transformer import MaskGiTLightning, TransformerStageConfig
from prod9.training.diffusion import MAISIDiffusionLightning, DiffusionStageConfig
from prod9.cli import autoencoder, maisi_vae, transformer, maskgit_controlnet, maisi_diffusion, maisi_controlnet

def _ckpt(module, path):
    AtomicCheckpointIO().save_checkpoint({'state_dict': module.state_dict(), 'hyper_parameters': dict(module.hparams),
                                          'prod9_class': type(module).__name__}, path)
    return path

@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('kinds')
    f = FSQModelConfig(channels=[8, 8], levels=[5, 5, 5]); v = MAISIVAEModelConfig(num_channels=[8, 8], norm_num_groups=8, num_res_blocks=1)
    tf = MaskGiTLightning(TransformerStageConfig(autoencoder_path='x', model={'hidden_dim': 16, 'num_layers': 1, 'num_heads': 2}).model_dump(),
                          125, [4, 4, 4], ['T1', 'T1ce', 'T2', 'FLAIR'])
    df = MAISIDiffusionLightning(DiffusionStageConfig(vae_path='x', model={'num_channels': [8, 8], 'num_res_blocks': 1, 'attention_levels': [False, False],
                                                      'num_head_channels': 8, 'norm_num_groups': 8}).model_dump(), [4, 4, 4], 4, ['T1'], 1.0)
    return {'fsq': export_autoencoder(build_autoencoder(f), f, d / 'ae.safetensors'), 'vae': export_vae(MAISIVAE(**v.model_dump()), v, d / 'vae.safetensors'),
            'tf': _ckpt(tf, d / 'tf.ckpt'), 'diff': _ckpt(df, d / 'diff.ckpt'), 'out': d}

CASES = [  # command, config, subcommand, file given, what the message must say it expected
    (autoencoder.main, 'maskgit/phantoms/stage1/base.yaml', 'validate', 'vae', 'not a prod9-train-autoencoder checkpoint or an FSQ autoencoder export'),
    (autoencoder.main, 'maskgit/phantoms/stage1/base.yaml', 'test', 'tf', 'not a prod9-train-autoencoder checkpoint or an FSQ autoencoder export'),
    (autoencoder.main, 'maskgit/phantoms/stage1/base.yaml', 'infer', 'diff', 'not a prod9-train-autoencoder checkpoint or an FSQ autoencoder export'),
    (maisi_vae.main, 'maisi/phantoms/vae.yaml', 'infer', 'fsq', 'not a prod9-train-maisi-vae checkpoint or a MAISI VAE export'),
    (maisi_vae.main, 'maisi/phantoms/vae.yaml', 'validate', 'tf', 'not a prod9-train-maisi-vae checkpoint or a MAISI VAE export'),
    (transformer.main, 'maskgit/phantoms/stage2/base.yaml', 'generate', 'diff', 'not a prod9-train-transformer checkpoint'),
    (transformer.main, 'maskgit/phantoms/stage2/base.yaml', 'validate', 'fsq', 'not a prod9-train-transformer checkpoint'),
    (maskgit_controlnet.main, 'maskgit/phantoms/stage3/controlnet.yaml', 'generate', 'tf', 'not a prod9-train-maskgit-controlnet checkpoint'),
    (maskgit_controlnet.main, 'maskgit/phantoms/stage3/controlnet.yaml', 'test', 'diff', 'not a prod9-train-maskgit-controlnet checkpoint'),
    (maisi_diffusion.main, 'maisi/phantoms/diffusion.yaml', 'generate', 'tf', 'not a prod9-train-maisi-diffusion checkpoint'),
    (maisi_diffusion.main, 'maisi/phantoms/diffusion.yaml', 'validate', 'vae', 'not a prod9-train-maisi-diffusion checkpoint'),
    (maisi_controlnet.main, 'maisi/phantoms/controlnet.yaml', 'generate', 'diff', 'not a prod9-train-maisi-controlnet checkpoint'),
    (maisi_controlnet.main, 'maisi/phantoms/controlnet.yaml', 'validate', 'tf', 'not a prod9-train-maisi-controlnet checkpoint'),
]

@pytest.mark.parametrize('main,config,command,given,expected', CASES, ids=[f"{cfg.replace('/', '-')}-{c}-{g}" for _, cfg, c, g, _ in CASES])
def test_wrong_kind_is_refused(files, capsys, main, config, command, given, expected):
    argv = [command, '--config', config, '--checkpoint', str(files[given]), '--output-dir', str(files['out'] / 'run')]
    if command in ('generate', 'infer'): argv += ['--output', str(files['out'] / 'gen')]
    if command == 'infer': argv += ['--input', str(files['out'] / 'volume.nii.gz')]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(files[given]) in err[0] and expected in err[0], err
