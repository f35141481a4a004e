"""Every command that takes a file refuses one of the wrong kind: exit 1 and one line on stderr that names the file, what it is and
what was expected (issue: a stage-2 or VAE file given to the autoencoder used to keep random weights and exit 0)."""
import pytest
from prod9.autoencoder.autoencoder_fsq import FSQModelConfig, build_autoencoder
from prod9.autoencoder.autoencoder_maisi import MAISIVAEModelConfig, MAISIVAE
from prod9.training.autoencoder_fsq import export_autoencoder
from prod9.training.maisi_vae import export_vae
from prod9.training.engine import AtomicCheckpointIO
from prod9.training.transformer import MaskGiTLightning, TransformerStageConfig
from prod9.training.diffusion import MAISIDiffusionLightning, DiffusionStageConfig
from prod9.training.controlnet import ControlNetLightning, ControlNetStageConfig
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
    unet = {'num_channels': [8, 8], 'num_res_blocks': 1, 'attention_levels': [False, False], 'num_head_channels': 8, 'norm_num_groups': 8}
    cn = ControlNetLightning.from_base(ControlNetStageConfig(vae_path='x', diffusion_path='y', model=unet).model_dump(), df, 4)
    return {'cn': _ckpt(cn, d / 'cn.ckpt'), 'fsq': export_autoencoder(build_autoencoder(f), f, d / 'ae.safetensors'), 'vae': export_vae(MAISIVAE(**v.model_dump()), v, d / 'vae.safetensors'),
            'tf': _ckpt(tf, d / 'tf.ckpt'), 'diff': _ckpt(df, d / 'diff.ckpt'), 'out': d}

# "command config subcommand file-given expected": the message must say the file is not what the command expected
CASES = {
    'autoencoder': ('maskgit/phantoms/stage1/base.yaml', 'not a prod9-train-autoencoder checkpoint or an FSQ autoencoder export', 'validate vae', 'test tf', 'infer diff', 'train tf'),
    'maisi_vae': ('maisi/phantoms/vae.yaml', 'not a prod9-train-maisi-vae checkpoint or a MAISI VAE export', 'infer fsq', 'validate tf', 'train diff'),
    'transformer': ('maskgit/phantoms/stage2/base.yaml', 'not a prod9-train-transformer checkpoint', 'generate diff', 'validate fsq', 'train diff'),
    'maskgit_controlnet': ('maskgit/phantoms/stage3/controlnet.yaml', 'not a prod9-train-maskgit-controlnet checkpoint', 'generate tf', 'test diff', 'train tf'),
    'maisi_diffusion': ('maisi/phantoms/diffusion.yaml', 'not a prod9-train-maisi-diffusion checkpoint', 'generate tf', 'validate vae', 'generate cn', 'train vae'),
    'maisi_controlnet': ('maisi/phantoms/controlnet.yaml', 'not a prod9-train-maisi-controlnet checkpoint', 'generate diff', 'validate tf', 'train diff'),
}
MAINS = {'autoencoder': autoencoder.main, 'maisi_vae': maisi_vae.main, 'transformer': transformer.main, 'maskgit_controlnet': maskgit_controlnet.main,
         'maisi_diffusion': maisi_diffusion.main, 'maisi_controlnet': maisi_controlnet.main}
RUNS = [(cmd, cfg, want, *run.split()) for cmd, (cfg, want, *runs) in CASES.items() for run in runs]

@pytest.mark.parametrize('cmd,config,expected,command,given', RUNS, ids=[f"{r[0]}-{r[3]}-{r[4]}" for r in RUNS])
def test_wrong_kind_is_refused(files, capsys, cmd, config, expected, command, given):
    main = MAINS[cmd]
    argv = [command, '--config', config, '--checkpoint', str(files[given]), '--output-dir', str(files['out'] / 'run')]
    if command in ('generate', 'infer'): argv += ['--output', str(files['out'] / 'gen')]
    if command == 'infer': argv += ['--input', str(files['out'] / 'volume.nii.gz')]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(files[given]) in err[0] and expected in err[0], err
