"""NVIDIA's released MAISI files, end to end through the commands: files in the releases' exact formats (the autoencoder at the
release's full width, the UNet in the rflow release's key layout at a width CI can afford), served from a Hugging Face cache in
its real layout with the Hub offline, downloaded → loaded → generated → written as NIfTI; the sampling loop checked against a plain
re-implementation of the release's own loop (`scripts/diff_model_infer.py` of NVIDIA-Medtech/NV-Generate-CTMR)."""
import shutil
from pathlib import Path
import nibabel as nib
import numpy as np
import pytest
import torch

from prod9.diffusion.pretrained import RELEASE_NETWORKS, MODALITY_CODES, released_diffusion_module
from prod9.files import read_released

SMALL = {'num_channels': [32, 32, 64, 64]}            # the rflow release's layout, narrower than its 64-128-256-512


def _vae_file(path: Path) -> Path:
    from monai.apps.generation.maisi.networks.autoencoderkl_maisi import AutoencoderKlMaisi
    torch.manual_seed(0)
    m = RELEASE_NETWORKS['maisi-vae']['model']
    torch.save(AutoencoderKlMaisi(**m, norm_eps=1e-6, num_splits=1).state_dict(), path)   # a raw state dict, as released
    return path


def _unet(seed=1, **over):
    from monai.apps.generation.maisi.networks.diffusion_model_unet_maisi import DiffusionModelUNetMaisi
    torch.manual_seed(seed)
    u = DiffusionModelUNetMaisi(**(RELEASE_NETWORKS['rflow-unet']['model'] | SMALL | over))
    with torch.no_grad():                 # MONAI zero-initialises the output layers; a trained file has weights there
        for w in u.parameters():
            if w.dim() > 1 and not w.any(): w.normal_(std=0.02)
    return u.eval()


def _unet_file(path: Path, unet) -> Path:
    torch.save({'unet_state_dict': unet.state_dict(), 'scale_factor': torch.tensor(1.31), 'epoch': 7, 'loss': np.float64(0.05),
                'num_train_timesteps': 1000}, path)
    return path


@pytest.fixture(scope='module')
def vae(tmp_path_factory):
    "The released autoencoder's exact format, made once (the full-width network takes seconds to build)."
    return _vae_file(tmp_path_factory.mktemp('vae') / 'autoencoder_v1.pt')


@pytest.fixture
def hub(vae, tmp_path, monkeypatch):
    """A Hugging Face cache (models--{org}--{name}/snapshots/{rev}/models/{file}, refs/main) holding the mr-brain set, and the Hub
    offline (what HF_HUB_OFFLINE=1 and HF_HUB_CACHE set): `hf_hub_download` serves the cache and fails for anything else."""
    from huggingface_hub import constants
    root = tmp_path / 'hub'
    for repo, name, make in (('NV-Generate-CT', 'autoencoder_v1.pt', lambda p: shutil.copy(vae, p)),
                             ('NV-Generate-MR-Brain', 'diff_unet_3d_rflow-mr-brain_v1.pt', lambda p: _unet_file(p, _unet()))):
        rev = ('c0ffee' * 7)[:40]
        snap = root / f'models--nvidia--{repo}' / 'snapshots' / rev / 'models'
        snap.mkdir(parents=True)
        make(snap / name)
        (root / f'models--nvidia--{repo}' / 'refs').mkdir(exist_ok=True)
        (root / f'models--nvidia--{repo}' / 'refs' / 'main').write_text(rev)
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)
    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(root))
    return root


def test_download_load_generate(hub, tmp_path, capsys):
    from prod9.cli.maisi_workflow import main as workflow
    models = tmp_path / 'models'
    assert workflow(['download', 'mr-brain', '--dir', str(models)]) == 0
    assert "NVIDIA Open Model License" in capsys.readouterr().out and (models / 'autoencoder_v1.pt').is_file()
    assert workflow(['download', 'mr-brain', '--dir', str(models)]) == 0                       # a second time: kept, not fetched again
    assert capsys.readouterr().out.count('already there') == 2

    from prod9.cli.maisi_diffusion import main as diffusion
    unet, out = models / 'diff_unet_3d_rflow-mr-brain_v1.pt', tmp_path / 'out'
    gen = ['generate', '--checkpoint', str(unet), '--output', str(out), '--modality', 'mri_t1', '--num-samples', '1']
    assert diffusion(gen + ['--spacing', '0.94', '0.94', '1.36', '--output-size', '32', '32', '32']) == 1   # no --config: the release is the config
    assert 'the MR releases generate X = Y in 128, 256, 384, 512 with Z = 128' in capsys.readouterr().err
    assert diffusion(gen + ['--spacing', '0.94', '0.94', '1.36', '--output-size', '32', '32', '32', '--any-size', '--num-inference-steps', '3']) == 0
    assert 'mri_t1 (label 9), guidance 2, 3 steps, decoded with autoencoder_v1.pt' in capsys.readouterr().out
    img = nib.load(out / 'sample_0001_mri_t1.nii.gz')
    assert img.shape == (32, 32, 32) and np.allclose(np.diag(img.affine)[:3], [0.94, 0.94, 1.36])
    a = img.get_fdata()
    assert a.min() >= 0 and np.isfinite(a).all() and a.std() > 0
    assert (out / 'samples_mri_t1.png').is_file()

    _, sd = read_released(unet)                                                              # one key renamed: refused, the key named
    k = 'spacing_layer.0.weight'; sd['unet_state_dict']['spacing_layer.0.renamed'] = sd['unet_state_dict'].pop(k)
    torch.save(sd, models / 'edited.pt')
    assert diffusion(['generate', '--checkpoint', str(models / 'edited.pt'), '--output', str(tmp_path / 'o2'), '--any-size']) == 1
    err = capsys.readouterr().err.strip()
    assert f"1 key(s) missing, first '{k}'" in err and len(err.splitlines()) == 1, err
    (models / 'cut.pt').write_bytes(unet.read_bytes()[:100_000])                             # a truncated download: not a release, not prod9's
    assert diffusion(['generate', '--checkpoint', str(models / 'cut.pt'), '--output', str(tmp_path / 'o3')]) == 1
    err = capsys.readouterr().err.strip()
    assert 'cut.pt: not a readable' in err and 'truncated' in err and len(err.splitlines()) == 1, err
    torch.save({'controlnet_state_dict': {}}, models / 'cn.pt')                                # a wrong kind: one line
    assert diffusion(['generate', '--checkpoint', str(models / 'cn.pt'), '--output', str(tmp_path / 'o4')]) == 1
    assert "NVIDIA's released MAISI ControlNet; generate takes a released diffusion UNet" in capsys.readouterr().err


def test_offline_without_the_file_names_it(hub, tmp_path, capsys):
    from prod9.cli.maisi_workflow import main as workflow
    assert workflow(['download', 'diff_unet_3d_rflow-mr.pt', '--dir', str(tmp_path / 'm')]) == 1
    line = capsys.readouterr().err.strip()
    assert len(line.splitlines()) == 1 and 'diff_unet_3d_rflow-mr.pt (about 722 MB)' in line and 'huggingface.co/nvidia/NV-Generate-MR' in line
    assert f"download it by hand into {tmp_path / 'm'}" in line and 'not in the Hugging Face cache' in line


def _release_loop(unet, noise, spacing, modality, steps, guidance):
    "The release's sampling loop (diff_model_infer.run_inference), written out plainly: RFlow timesteps sized by the latent, CFG with label 0."
    from monai.networks.schedulers import RFlowScheduler
    sch = RFlowScheduler(num_train_timesteps=1000, use_discrete_timesteps=False, use_timestep_transform=True, sample_method='uniform', scale=1.4)
    sch.set_timesteps(num_inference_steps=steps, input_img_size_numel=torch.prod(torch.tensor(noise.shape[2:])))
    # the release feeds spacing x 1e2 as float16 under CUDA autocast; on a CPU the same float16-rounded values go in as float32
    spacing_tensor = torch.from_numpy(np.array(spacing).astype(float)[np.newaxis, :] * 1e2).half().float()
    modality_tensor = modality * torch.ones((len(spacing_tensor)), dtype=torch.long)
    image = noise.clone()
    all_t = sch.timesteps
    all_next = torch.cat((all_t[1:], torch.tensor([0], dtype=all_t.dtype)))
    for t, next_t in zip(all_t, all_next):
        inputs = {'x': image, 'timesteps': torch.Tensor((t,)), 'spacing_tensor': spacing_tensor, 'class_labels': modality_tensor}
        if guidance > 0:
            for k in inputs:
                inputs[k] = torch.cat([inputs[k]] * 2) if k != 'class_labels' else torch.cat([inputs[k], torch.zeros_like(modality_tensor)])
            model_t, model_uncond = unet(**inputs).chunk(2)
            out = model_uncond + guidance * (model_t - model_uncond)
        else: out = unet(**inputs)
        image, _ = sch.step(out, t, image, next_t)
    return image


@pytest.mark.parametrize('guidance', [0.0, 2.0])
def test_parity_with_the_release_loop(vae, tmp_path, guidance):
    u = _unet(seed=3)
    unet_file = _unet_file(tmp_path / 'diff_unet_3d_rflow-mr-brain_v1.pt', u)
    shutil.copy(vae, tmp_path / 'autoencoder_v1.pt')
    m = released_diffusion_module(unet_file, output_size=[32, 32, 32])
    noise = torch.randn(1, 4, 8, 8, 8, generator=torch.Generator().manual_seed(5))
    spacing = [0.94, 0.94, 1.36]
    ours = m.generate_latents(1, [MODALITY_CODES['mri_t1']], num_inference_steps=4, spacing=spacing, noise=noise, guidance_scale=guidance)
    with torch.no_grad(): theirs = _release_loop(u, noise, spacing, MODALITY_CODES['mri_t1'], 4, guidance)
    assert (ours - theirs).abs().max() < 1e-5
    assert (ours - noise).abs().max() > 1e-2                     # the loop did move the latents


def test_finetune_a_released_unet_on_the_workflows_embeddings(vae, tmp_path, capsys):
    """`init_from:` a released UNet on the embeddings the released autoencoder made (`setup --weights-dir`, `embed`): the release's
    network, weights and scale factor, the data's class trained as the release's modality code, then generate from the fine-tuned run."""
    import prod9
    from prod9.io import write_nifti
    from prod9.phantoms import make_phantom
    from prod9.cli.maisi_workflow import main as workflow
    from prod9.cli.maisi_diffusion import main as diffusion
    prep, weights, work = tmp_path / 'prep', tmp_path / 'weights', tmp_path / 'work'
    for i in range(3): write_nifti(make_phantom((32, 32, 32), i)['FLAIR'].astype(np.float32), prep / f'case{i}.nii.gz', np.diag([1.5, 1.5, 1.5, 1]))
    weights.mkdir(); shutil.copy(vae, weights / 'autoencoder_v1.pt')
    released = _unet(seed=4)
    unet = _unet_file(weights / 'diff_unet_3d_rflow-mr-brain_v1.pt', released)
    assert workflow(['setup', '--data_path', str(prep), '--work_dir', str(work), '--weights_dir', str(weights), '--num_splits', '1', '--no_amp']) == 0
    assert workflow(['embed', '--work-dir', str(work)]) == 0
    cfg = str(work / 'config_maisi_diff_model.yaml')
    quick = ['--set', 'trainer.max_epochs=1', '--set', 'trainer.enable_progress_bar=false', '--set', 'data.batch_size=2']
    capsys.readouterr()
    assert diffusion(['train', '--config', cfg, '--set', f'init_from={unet}', '--set', 'release_modalities={image: mri_flair}'] + quick) == 0
    out = capsys.readouterr().out
    assert 'fine-tuning diff_unet_3d_rflow-mr-brain_v1.pt (rflow-unet, scale_factor 1.310): image as mri_flair (11)' in out, out[-2000:]
    m = prod9.load(work / 'models' / 'diffusion' / 'last.ckpt')
    assert m.hparams.label_codes == [11] and abs(m.scale_factor - 1.31) < 1e-6 and m.cfg.model.num_class_embeds == 128
    assert m.class_labels({'label': torch.tensor([0, 0])}).tolist() == [11, 11]
    sd, rel = m.unet.state_dict(), released.state_dict()
    assert sd.keys() == rel.keys() and any(not torch.equal(sd[k], rel[k]) for k in rel)          # the release's layout, trained on

    gen = ['generate', '--config', cfg, '--checkpoint', str(work / 'models' / 'diffusion' / 'last.ckpt'), '--output', str(tmp_path / 'gen'),
           '--modality', 'image', '--num-samples', '1', '--num-inference-steps', '2']
    assert diffusion(gen + ['--guidance-scale', '2']) == 0                                     # label 0 is still the unconditional label
    assert nib.load(tmp_path / 'gen' / 'sample_0001_image.nii.gz').shape == (32, 32, 32)

    torch.save({'controlnet_state_dict': {}}, weights / 'cn.pt')
    other = ['--output-dir', str(tmp_path / 'o')] + quick
    assert diffusion(['train', '--config', cfg, '--set', f'init_from={weights / "cn.pt"}'] + other) == 1
    err = capsys.readouterr().err.strip()
    assert "init_from: " in err and "NVIDIA's released MAISI ControlNet, not NVIDIA's released diffusion UNet" in err and len(err.splitlines()) == 1, err
    assert diffusion(['train', '--config', cfg, '--set', f'init_from={unet}', '--set', 'release_modalities={T1: mri_t1}'] + other) == 1
    assert "release_modalities: ['T1'] are not classes of the data (its classes: ['image'])" in capsys.readouterr().err
    assert diffusion(['train', '--config', cfg, '--set', f'init_from={unet}', '--set', 'release_modalities={image: mri_x}'] + other) == 1
    assert "image: 'mri_x' is no modality of the release" in capsys.readouterr().err


def _controlnet(seed=2, **over):
    "A ControlNet in the rflow CT release's layout (8 label bits, 8-32-64 condition widths), its zero-initialised outputs given weights."
    from monai.apps.generation.maisi.networks.controlnet_maisi import ControlNetMaisi
    torch.manual_seed(seed)
    cn = ControlNetMaisi(**(RELEASE_NETWORKS['rflow-controlnet']['model'] | SMALL | over))
    with torch.no_grad():
        for w in cn.parameters():
            if not w.any(): w.normal_(std=0.3)
    return cn.eval()


def _release_controlnet_loop(unet, cn, noise, spacing, modality, cond, steps):
    "The release's ControlNet loop (utils_infer.run_controlnet_conditioned_image_dm, no guidance), written out plainly."
    from monai.networks.schedulers import RFlowScheduler
    sch = RFlowScheduler(num_train_timesteps=1000, use_discrete_timesteps=False, use_timestep_transform=True, sample_method='uniform', scale=1.4)
    sch.set_timesteps(num_inference_steps=steps, input_img_size_numel=torch.prod(torch.tensor(noise.shape[2:])))
    spacing_tensor = torch.from_numpy(np.array(spacing).astype(float)[np.newaxis, :] * 1e2).half().float()
    modality_tensor = modality * torch.ones((1,), dtype=torch.long)
    latents, all_t = noise.clone(), sch.timesteps
    for t, next_t in zip(all_t, torch.cat((all_t[1:], torch.tensor([0], dtype=all_t.dtype)))):
        down, mid = cn(x=latents, timesteps=torch.Tensor((t,)), controlnet_cond=cond, class_labels=modality_tensor)
        out = unet(x=latents, timesteps=torch.Tensor((t,)), spacing_tensor=spacing_tensor, down_block_additional_residuals=down,
                   mid_block_additional_residual=mid, class_labels=modality_tensor)
        latents, _ = sch.step(out, t, latents, next_t)
    return latents


def _label_map(path: Path, affine=None) -> np.ndarray:
    "A 32³ label map of the release's dictionary: the body (200), a liver (1), a kidney (5)."
    from prod9.io import write_nifti
    lab = np.zeros((32, 32, 32), np.int16)
    lab[4:28, 4:28, 4:28] = 200; lab[8:18, 8:20, 10:20] = 1; lab[20:26, 10:16, 12:18] = 5
    write_nifti(lab, path, np.diag([1.5, 1.5, 2.0, 1]) if affine is None else affine)
    return lab


def test_released_controlnet_generates_from_a_label_map(vae, tmp_path, capsys):
    """`generate --checkpoint controlnet_3d_rflow-ct.pt --unet diff_unet_3d_rflow-ct.pt --mask labels.nii.gz`, no config: the label map's
    grid is the output's, CT in HU with the background at -1000; the latents equal the release's own ControlNet loop's for the same
    noise; unknown labels are named, impossible ones and missing pieces refused in one line each."""
    from prod9.cli.maisi_controlnet import main as controlnet
    from prod9.diffusion.pretrained import released_controlnet_module
    from prod9.controlnet.controlnet_model import binarize_labels
    u, cn = _unet(seed=5), _controlnet()
    unet_file = _unet_file(tmp_path / 'diff_unet_3d_rflow-ct.pt', u)
    torch.save({'controlnet_state_dict': cn.state_dict()}, tmp_path / 'controlnet_3d_rflow-ct.pt')
    shutil.copy(vae, tmp_path / 'autoencoder_v1.pt')
    lab = _label_map(tmp_path / 'labels.nii.gz')

    m = released_controlnet_module(tmp_path / 'controlnet_3d_rflow-ct.pt', unet_file, output_size=[32, 32, 32], spacing=[1.5, 1.5, 2.0])
    cond = binarize_labels(torch.from_numpy(lab.astype(np.int64))[None, None])
    noise = torch.randn(1, 4, 8, 8, 8, generator=torch.Generator().manual_seed(5))
    ours = m.generate_latents(1, [MODALITY_CODES['ct']], num_inference_steps=3, control=cond, spacing=[1.5, 1.5, 2.0], noise=noise)
    with torch.no_grad(): theirs = _release_controlnet_loop(u, cn, noise, [1.5, 1.5, 2.0], MODALITY_CODES['ct'], cond, 3)
    assert (ours - theirs).abs().max() < 1e-5 and (ours - noise).abs().max() > 1e-2

    base = ['generate', '--checkpoint', str(tmp_path / 'controlnet_3d_rflow-ct.pt'), '--output', str(tmp_path / 'gen'), '--num-samples', '1',
            '--num-inference-steps', '2']
    assert controlnet(base + ['--unet', str(unet_file), '--mask', str(tmp_path / 'labels.nii.gz')]) == 1      # 32³ is below the CT release's sizes
    assert 'the CT release generates X = Y in 256, 384, 512' in capsys.readouterr().err
    assert controlnet(base + ['--unet', str(unet_file), '--mask', str(tmp_path / 'labels.nii.gz'), '--any-size']) == 0
    out = capsys.readouterr().out
    assert 'controlnet_3d_rflow-ct.pt on diff_unet_3d_rflow-ct.pt: 32x32x32 at 1.5 x 1.5 x 2 mm from labels.nii.gz (3 labels), ct' in out, out
    img = nib.load(tmp_path / 'gen' / 'sample_0001_ct.nii.gz')
    assert img.shape == (32, 32, 32) and np.allclose(np.linalg.norm(img.affine[:3, :3], axis=0), [1.5, 1.5, 2.0])
    x = img.get_fdata()
    assert (x[lab == 0] == -1000).all() and -1000 <= x.min() and x.max() <= 1000 and x[lab > 0].std() > 0
    assert (nib.load(tmp_path / 'gen' / 'sample_0001_mask.nii.gz').get_fdata() == lab).all()

    lab2 = lab.copy(); lab2[0, 0, 0] = 150
    from prod9.io import write_nifti
    write_nifti(lab2, tmp_path / 'odd.nii.gz', np.diag([1.5, 1.5, 2.0, 1]))
    assert controlnet(base + ['--unet', str(unet_file), '--mask', str(tmp_path / 'odd.nii.gz'), '--any-size', '--output', str(tmp_path / 'g2')]) == 0
    assert 'label value(s) [150] are not in the release' in capsys.readouterr().err
    lab2[0, 0, 0] = 401; write_nifti(lab2, tmp_path / 'big.nii.gz', np.diag([1.5, 1.5, 2.0, 1]))
    for extra, msg in ((['--unet', str(unet_file), '--mask', str(tmp_path / 'big.nii.gz'), '--any-size'], 'outside 0-255'),
                       (['--mask', str(tmp_path / 'labels.nii.gz')], 'name the released UNet it steers with --unet'),
                       (['--unet', str(unet_file)], 'needs --mask: a label map'),
                       (['--unet', str(unet_file), '--mask', str(tmp_path / 'labels.nii.gz'), '--guidance-scale', '2'], 'runs without guidance'),
                       (['--unet', str(tmp_path / 'autoencoder_v1.pt'), '--mask', str(tmp_path / 'labels.nii.gz')], 'not a diffusion UNet')):
        assert controlnet(base + extra + ['--output', str(tmp_path / 'bad')]) == 1
        err = capsys.readouterr().err.strip()
        assert msg in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / 'bad').exists()


def test_controlnet_from_a_released_unet(vae, tmp_path, capsys):
    """`init_from:` a released UNet in a ControlNet config: the released UNet frozen as the base (its modality codes, scale factor and
    spacing input), a `label_map` ControlNet copied from it and trained on the phantoms' label maps, then generation for a label map."""
    import prod9, yaml
    from prod9.cli.maisi_controlnet import main as controlnet
    from prod9.diffusion.pretrained import import_released_vae
    released = _unet(seed=6)
    unet = _unet_file(tmp_path / 'diff_unet_3d_rflow-mr-brain_v1.pt', released)
    vae_export = import_released_vae(vae, tmp_path / 'vae.safetensors')
    cfg = tmp_path / 'cn.yaml'
    cfg.write_text(yaml.safe_dump({
        'output_dir': str(tmp_path / 'run'), 'vae_path': str(vae_export), 'init_from': str(unet),
        'data': {'source': 'phantoms', 'num_cases': 4, 'shape': [32, 32, 32], 'roi_size': [32, 32, 32], 'modalities': ['FLAIR'],
                 'batch_size': 2, 'val_fraction': 0.25},
        'sliding_window': {'roi_size': [32, 32, 32]}, 'encode_batch_size': 1,
        'controlnet': {'control_type': 'label_map', 'conditioning_embedding_num_channels': [8, 8, 8]},
        'trainer': {'max_epochs': 1, 'enable_progress_bar': False}}))
    assert controlnet(['train', '--config', str(cfg)]) == 0, capsys.readouterr().err[-3000:]
    out = capsys.readouterr().out
    assert 'fine-tuning diff_unet_3d_rflow-mr-brain_v1.pt (rflow-unet, scale_factor' in out and 'FLAIR as mri_flair (11)' in out, out[-2000:]
    m = prod9.load(tmp_path / 'run' / 'last.ckpt')
    assert type(m).__name__ == 'ControlNetLightning' and m.hparams.label_codes == [9, 17, 10, 11] and m.hparams.release['network'] == 'rflow-unet'
    assert m.controlnet.class_embedding.num_embeddings == 128 and m.cfg.controlnet.label_bits == 8
    rel = released.state_dict()
    assert all(torch.equal(v, rel[k]) for k, v in m.unet.state_dict().items())              # the released UNet stays frozen
    assert m.control_labels(torch.tensor([3])).tolist() == [11]                               # FLAIR: the ControlNet reads the release's code too
    from prod9.io import write_nifti
    from prod9.phantoms import make_phantom
    write_nifti(make_phantom((32, 32, 32), 9)['seg'].astype(np.int16), tmp_path / 'seg.nii.gz', np.eye(4))
    r = controlnet(['generate', '--config', str(cfg), '--checkpoint', str(tmp_path / 'run' / 'last.ckpt'), '--output', str(tmp_path / 'gen'),
                    '--mask', str(tmp_path / 'seg.nii.gz'), '--modality', 'FLAIR', '--num-samples', '1', '--num-inference-steps', '2'])
    assert r == 0, capsys.readouterr().err[-2000:]
    assert sorted(p.name for p in (tmp_path / 'gen').glob('*.nii.gz')) == ['sample_0001_FLAIR.nii.gz', 'sample_0001_mask.nii.gz']
    both = tmp_path / 'both.yaml'
    both.write_text(cfg.read_text() + f"diffusion_path: {tmp_path / 'run' / 'last.ckpt'}\n")
    assert controlnet(['train', '--config', str(both)]) == 1
    assert 'diffusion_path (a prod9-train-maisi-diffusion checkpoint) or init_from' in capsys.readouterr().err


def test_released_autoencoder_sees_volumes_as_the_release_normalised_them(vae, tmp_path, capsys):
    """With a released autoencoder, setup and embed normalise as the release does and say what is far from it: CT in Hounsfield units
    is windowed -1000..1000 → 0..1 (so an embedding is the VAE's μ of exactly that), a spacing outside 0.5-5 mm and CT that is not in
    HU are named in a warning."""
    from prod9.io import write_nifti
    from prod9.phantoms import make_phantom
    from prod9.cli.maisi_workflow import main as workflow
    from prod9.diffusion.pretrained import released_vae
    prep, weights, work = tmp_path / 'prep', tmp_path / 'weights', tmp_path / 'work'
    hu = [make_phantom((32, 32, 32), i)['T1'].astype(np.float32) * 2000 - 1000 for i in range(2)]      # "CT": air at -1000 HU
    for i, v in enumerate(hu): write_nifti(v, prep / f'ct{i}.nii.gz', np.diag([0.3, 0.3, 0.3, 1]))
    weights.mkdir(); shutil.copy(vae, weights / 'autoencoder_v1.pt')
    assert workflow(['setup', '--data-path', str(prep), '--work-dir', str(work), '--weights-dir', str(weights), '--num-splits', '1', '--no-amp']) == 0
    out = capsys.readouterr().out
    assert 'warning: 2 volume(s): spacing 0.3 x 0.3 x 0.3 mm; the release was trained on 0.5-5 mm' in out, out
    assert workflow(['embed', '--work-dir', str(work)]) == 0
    out = capsys.readouterr().out
    assert 'intensity: ct (the first volume' in out and 'do not look like CT' not in out, out
    z = nib.load(work / 'embedding' / 'ct0.nii.gz').get_fdata()
    with torch.no_grad(): mu = released_vae(vae).encode(torch.from_numpy((hu[0] + 1000) / 2000).clamp(0, 1)[None, None].float())[0]
    assert np.abs(np.moveaxis(z, -1, 0) - mu[0].numpy()).max() < 1e-4                   # the release's window, then its VAE
    for i in range(2): write_nifti(make_phantom((32, 32, 32), i)['T1'], prep / f'ct{i}.nii.gz', np.diag([1.0, 1.0, 1.0, 1]))    # [0, 1], not HU
    assert workflow(['setup', '--data-path', str(prep), '--work-dir', str(tmp_path / 'w2'), '--weights-dir', str(weights), '--num-splits', '1',
                     '--no-amp', '--intensity', 'ct']) == 0
    assert 'spacing' not in capsys.readouterr().out
    assert workflow(['embed', '--work-dir', str(tmp_path / 'w2')]) == 0
    assert 'do not look like CT in Hounsfield units' in capsys.readouterr().out
    assert workflow(['setup', '--data-path', str(prep), '--work-dir', str(tmp_path / 'w3'), '--intensity', 'mri']) == 1
    assert "--intensity is the released autoencoder's normalisation" in capsys.readouterr().err
