"""Every command line of seeds 000, 001 and 003, run as written (issue 23).

The only changes are where the data is and how big everything is: BRATS_DATA_DIR and MEDMNIST_DATA_DIR point at a BraTS-layout
folder of phantoms and MedMNIST-format files this test writes, and PROD9_SET shrinks epochs, widths and volumes; the command lines
are the seeds' own, in the seeds' order, each seed in its own working folder. Each must exit 0 and write what the seed says."""
import shlex
import numpy as np, nibabel as nib
import pytest
from seed_commands import seed_commands, seed_file, SEEDS
from prod9.io import write_nifti
from prod9.phantoms import make_phantom
from prod9.data import BRATS_SUFFIX, medmnist_file
from prod9.config import MODALITIES

pytestmark = pytest.mark.skipif(not SEEDS.is_dir(), reason=f"the seed documents are not at {SEEDS}")

COMMON = ("trainer.max_epochs=1; trainer.limit_train_batches=2; trainer.limit_val_batches=1; trainer.limit_test_batches=1; "
          "trainer.log_every_n_steps=1; trainer.enable_progress_bar=false; trainer.precision=32-true; trainer.accelerator=cpu; "
          "data.num_workers=0; data.batch_size=2; data.roi_size=[16, 16, 16]; sliding_window.roi_size=[16, 16, 16]")
SIZE = {   # widths and depths per command: tiny, as every test here
    'prod9-train-autoencoder': "model.channels=[8, 8, 8]; model.num_res_blocks=1; model.norm_num_groups=8; loss.adversarial.weight=0",
    'prod9-train-transformer': "model.hidden_dim=16; model.num_layers=1; model.num_heads=2; sampler.steps=2; validation.num_samples=0",
    'prod9-train-maskgit-controlnet': "controlnet.num_layers=1; controlnet.embed_channels=[4, 8]; sampler.steps=2; validation.num_samples=0",
    'prod9-train-maisi-vae': ("model.num_channels=[8, 8, 8]; model.num_res_blocks=[1, 1, 1]; model.attention_levels=[false, false, false]; "
                              "model.norm_num_groups=8; loss.adversarial.weight=0"),
    'prod9-train-maisi-diffusion': ("model.num_channels=[8, 8]; model.num_res_blocks=1; model.attention_levels=[false, false]; "
                                    "model.num_head_channels=[0, 8]; model.norm_num_groups=8; scheduler.num_inference_steps=2"),
    'prod9-train-maisi-controlnet': "",
}

@pytest.fixture(scope='module')
def data(tmp_path_factory):
    "A BraTS 2021-layout folder of ten 16^3 phantom cases (labels 0/1/2/4), and MedMNIST's organmnist3d at 28^3 and 64^3 (official split sizes)."
    import medmnist
    root = tmp_path_factory.mktemp('seed_data')
    for i in range(10):
        case, ph = f'BraTS2021_{i:05d}', make_phantom((16, 16, 16), i)
        for m in MODALITIES: write_nifti((ph[m] * 1000).astype(np.int16), root / 'BraTS' / case / f"{case}_{BRATS_SUFFIX['2020'][m]}.nii.gz", np.eye(4))
        seg = ph['seg'].copy(); seg[seg == 3] = 4
        write_nifti(seg.astype(np.uint8), root / 'BraTS' / case / f'{case}_seg.nii.gz', np.eye(4))
    (root / 'medmnist').mkdir()
    rng = np.random.default_rng(0)
    for size in (28, 64):
        arrays = {}
        for s in ('train', 'val', 'test'):
            n = medmnist.INFO['organmnist3d']['n_samples'][s]
            imgs = np.zeros((n, size, size, size), np.uint8); imgs[:, size // 4:size // 2, size // 4:size // 2, size // 4:size // 2] = rng.integers(40, 256, (n, 1, 1, 1))
            arrays[f'{s}_images'], arrays[f'{s}_labels'] = imgs, rng.integers(0, 11, (n, 1))
        np.savez(root / 'medmnist' / medmnist_file('organmnist3d', size), **arrays)
    return root

def run_seed(cli, data, tmp_path, seed:str) -> list[str]:
    "Run every command of seed `seed` in order in its own folder; returns the folder. Fails on the first command that does not exit 0."
    cwd = tmp_path / f'seed{seed}'; cwd.mkdir()
    ph = make_phantom((24, 24, 24), 99)
    for name in ('volume.nii.gz', 'large_volume.nii.gz'): write_nifti(ph['T1'], cwd / name, np.eye(4))      # what `infer --input` reads
    for cmd in seed_commands(seed_file(seed)):
        argv = shlex.split(cmd)
        env = {'BRATS_DATA_DIR': str(data / 'BraTS'), 'MEDMNIST_DATA_DIR': str(data / 'medmnist'), 'PROD9_SET': f"{COMMON}; {SIZE[argv[0]]}"}
        r = cli(*argv, cwd=cwd, env=env)
        assert r.returncode == 0, f"seed {seed}: `{cmd}` exited {r.returncode}:\n{r.stderr[-3000:]}"
    return cwd

def nifti(path): return nib.load(path).get_fdata()

def test_seed_000_readme(cli, data, tmp_path):
    d = run_seed(cli, data, tmp_path, '000')
    for run in ('stage1', 'stage2', 'maisi_vae', 'maisi_diffusion', 'maisi_controlnet'):
        assert (d / 'outputs' / run / 'best.ckpt').is_file(), run
    assert (d / 'outputs' / 'brats_autoencoder.safetensors').is_file() and (d / 'outputs' / 'brats_vae.safetensors').is_file()
    assert nifti(d / 'outputs' / 'generated' / 'sample_0010_T1.nii.gz').shape == (16, 16, 16)        # generate --num-samples 10 --modality T1
    assert nifti(d / 'reconstructed.nii.gz').shape == (24, 24, 24)                                  # infer keeps the input's size

def test_seed_001_training_guide(cli, data, tmp_path):
    d = run_seed(cli, data, tmp_path, '001')
    for run in ('maskgit_stage1', 'maskgit_stage2_label', 'maskgit_stage2_incontext', 'maskgit_stage3', 'maisi_stage1', 'maisi_stage2', 'maisi_stage3'):
        assert (d / 'outputs' / run / 'best.ckpt').is_file() and list((d / 'outputs' / run / 'logs').rglob('metrics.csv')), run
    assert len(list((d / 'outputs' / 'generated').glob('sample_*_T1.nii.gz'))) == 10
    assert len(list((d / 'outputs' / 'generated_incontext').glob('*.nii.gz'))) >= 10
    assert len(list((d / 'outputs' / 'generated_maisi').glob('sample_*.nii.gz'))) >= 10
    assert (d / 'outputs' / 'brats_transformer.ckpt').is_file() and (d / 'outputs' / 'brats_diffusion.ckpt').is_file()   # what stage 3 reads

def test_seed_003_config_guide(cli, data, tmp_path):
    d = run_seed(cli, data, tmp_path, '003')
    for f in ('medmnist3d_autoencoder.safetensors', 'medmnist3d_autoencoder_ffl.safetensors', 'brats_autoencoder.safetensors'):
        assert (d / 'outputs' / f).is_file(), f
