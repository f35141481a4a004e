"""`prod9-evaluate` as a user runs it (issue 34's "done when"): FID of two identical folders is about 0 in MedicalNet and
RadImageNet features and grows with blur, a weights file of the wrong format is one line, and the memorization check flags a
planted copy (exact, or mirrored and shifted) among 20 generated volumes and none of 20 independent ones, exiting 1 under --gate.
Feature weights are random but in the published files' exact layouts (the real ones cannot be fetched here)."""
import json
import numpy as np
import torch
import pytest
from prod9.io import write_nifti
from prod9.phantoms import make_phantom
from prod9.evaluation import build_network, feature_space, RadImageNetResNet50


def phantom(seed, shape):
    return torch.from_numpy(make_phantom(shape, seed)['T1']).float()

def write(folder, vols):
    folder.mkdir(parents=True, exist_ok=True)
    for k, v in enumerate(vols): write_nifti(v.numpy() * 800 + 20, folder / f'sample_{k + 1:04d}.nii.gz')   # scanner-like units
    return folder

def shifted(v, d):
    "`v` moved by d voxels per axis, the gap filled with background (a copy placed elsewhere, not rolled around)."
    out = torch.zeros_like(v)
    src = tuple(slice(max(0, -k), v.shape[a] - max(0, k)) for a, k in enumerate(d))
    dst = tuple(slice(max(0, k), v.shape[a] - max(0, -k)) for a, k in enumerate(d))
    out[dst] = v[src]
    return out

@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    d = tmp_path_factory.mktemp('weights')
    torch.manual_seed(0)
    sd = {f'module.{k}': v for k, v in build_network(feature_space('medicalnet')).state_dict().items()}
    sd['module.conv_seg.0.weight'] = torch.randn(32, 512, 3, 3, 3)             # MedicalNet's segmentation head, unused by FID
    torch.save({'state_dict': sd}, d / 'resnet_10_23dataset.pth')
    torch.save(RadImageNetResNet50().state_dict(), d / 'RadImageNet-ResNet50_notop.pth')
    return d


def test_fid_identical_folders_zero_blur_grows_and_wrong_weights_one_line(cli, tmp_path, weights):
    from monai.transforms import GaussianSmooth
    fid = {}
    for feats, wfile, shape in (('medicalnet', 'resnet_10_23dataset.pth', (24, 24, 24)), ('radimagenet', 'RadImageNet-ResNet50_notop.pth', (16, 16, 16))):
        vols = [phantom(s, shape) for s in range(8)]
        real, same = write(tmp_path / f'real{shape[0]}', vols), write(tmp_path / f'same{shape[0]}', vols)
        blurred = write(tmp_path / f'blur{shape[0]}', [GaussianSmooth(1.5)(v[None])[0] for v in vols])
        for name, gen in (('same', same), ('blur', blurred)):
            out = tmp_path / f'ev_{feats}_{name}'
            r = cli('prod9-evaluate', 'fid', '--real', real, '--generated', gen, '--features', feats, '--weights', weights / wfile,
                    '--output', out, '--quiet')
            assert r.returncode == 0, r.stderr
            assert 'FID' in r.stdout and 'fid.json' in r.stdout
            rep = json.loads((out / 'fid.json').read_text())
            assert rep['features']['weights'].endswith(wfile) and rep['real']['n'] == rep['generated']['n'] == 8
            fid[feats, name] = rep['fid']
            assert (out / 'fid.md').is_file()
    assert rep.keys() >= {'fid_xy', 'fid_yz', 'fid_zx'}                         # 2.5D: per plane, and the mean
    for feats in ('medicalnet', 'radimagenet'):
        assert fid[feats, 'same'] < 1e-6 < fid[feats, 'blur'], fid
    r = cli('prod9-evaluate', 'fid', '--real', real, '--generated', same, '--features', 'medicalnet',
            '--weights', weights / 'RadImageNet-ResNet50_notop.pth', '--output', tmp_path / 'bad')
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert 'not the medicalnet network' in r.stderr and 'resnet_10_23dataset.pth' in r.stderr
    assert not (tmp_path / 'bad' / 'fid.json').exists()


def test_memorization_flags_planted_copies_among_20_and_none_of_20_independent(cli, tmp_path):
    shape = (24, 24, 24)
    train_vols = [phantom(s, shape) for s in range(10)]
    train = write(tmp_path / 'train', train_vols)
    held = write(tmp_path / 'held', [phantom(s, shape) for s in range(300, 306)])
    indep = [phantom(s, shape) for s in range(1000, 1020)]
    planted = indep[:18] + [train_vols[9], shifted(train_vols[2].flip(1), (-2, 3, 2))]
    gen, clean = write(tmp_path / 'gen', planted), write(tmp_path / 'clean', indep)
    r = cli('prod9-evaluate', 'memorization', '--train', train, '--held-out', held, '--generated', gen, '--output', tmp_path / 'm1', '--gate')
    assert r.returncode == 1, (r.stdout, r.stderr)
    m = json.loads((tmp_path / 'm1' / 'memorization.json').read_text())
    assert m['flagged'] == ['sample_0019.nii.gz', 'sample_0020.nii.gz'], m['rows']
    assert [row['nearest_training'] for row in m['rows'][18:]] == ['sample_0010.nii.gz', 'sample_0003.nii.gz']
    assert m['reference'] == 'held-out real volumes' and m['n_reference'] == 6
    assert (tmp_path / 'm1' / 'memorization.png').stat().st_size > 1000
    r = cli('prod9-evaluate', 'memorization', '--train', train, '--held-out', held, '--generated', clean, '--output', tmp_path / 'm2', '--gate')
    assert r.returncode == 0, (r.stdout, r.stderr)
    m2 = json.loads((tmp_path / 'm2' / 'memorization.json').read_text())
    assert m2['flagged'] == [] and m2['generated_similarity']['max'] < m2['threshold']


def test_bad_input_is_one_line(cli, tmp_path, weights):
    a = write(tmp_path / 'a', [phantom(s, (24, 24, 24)) for s in range(3)])
    b = write(tmp_path / 'b', [phantom(s, (24, 24, 16)) for s in range(3)])
    masks = tmp_path / 'masks'; masks.mkdir()
    write_nifti(np.zeros((8, 8, 8), np.int16), masks / 'case_mask.nii.gz')
    w = weights / 'resnet_10_23dataset.pth'
    for args, want in [(('fid', '--real', a, '--generated', b, '--weights', w), 'give --size X Y Z'),
                       (('fid', '--real', a, '--generated', masks, '--weights', w), 'no .nii, .nii.gz'),
                       (('fid', '--real', a, '--generated', tmp_path / 'none', '--weights', w), 'no such folder'),
                       (('fid', '--real', a, '--generated', a), 'needs resnet_10_23dataset.pth'),
                       (('diversity', '--real', a, '--generated', a), 'at least 25 voxels per axis'),
                       (('prdc', '--real', a, '--generated', a, '--weights', w), 'more than k=5 samples')]:
        r = cli('prod9-evaluate', *args, '--output', tmp_path / 'ev')
        assert r.returncode == 1 and want in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
    r = cli('prod9-evaluate', 'fid', '--real', a, '--generated', b, '--weights', w, '--size', 24, 24, 24, '--output', tmp_path / 'ok', '--quiet')
    assert r.returncode == 0, r.stderr
