"""The packaged real-MRI stage-1 recipe (issue 20) through `prod9-train-autoencoder train` on a folder of small real-format T1 volumes:
it trains, validates on whole volumes through the sliding window with foreground metrics, and its codebook does not collapse."""
import csv
import numpy as np, nibabel as nib
import pytest
from prod9.phantoms import make_phantom

def t1_folder(d, n=4):
    "n int16 T1 volumes in scanner units, 2 mm voxels, LPS-ish affine, as a scanner export would write them, with air around the head."
    d.mkdir()
    for i in range(n):
        ph = make_phantom((28, 32, 24), 10 + i)
        aff = np.diag([-2.0, -2.0, 2.0, 1.0]); aff[:3, 3] = [40, 44, -36]
        img = nib.Nifti1Image(np.pad(np.round(ph['T1'] * 1800 + 20), 6).astype(np.int16), aff)     # 40 x 44 x 36 voxels
        nib.save(img, d / f'sub-{i:02d}_T1w.nii.gz')
    return d

@pytest.mark.parametrize('prog, cfg', [('prod9-train-autoencoder', 'maskgit/nifti/stage1/real_mri.yaml'),
                                       ('prod9-train-maisi-vae', 'maisi/autoencoder/real_mri_vae.yaml')])
def test_packaged_real_mri_recipe_trains_without_collapse(cli, tmp_path, prog, cfg):
    data = t1_folder(tmp_path / 'scans')
    small = ['--set', 'data.roi_size=[16, 16, 16]', '--set', 'data.crops_per_volume=4', '--set', 'trainer.max_epochs=2',
             '--set', 'trainer.enable_progress_bar=false', '--set', 'sliding_window.roi_size=[32, 32, 32]', '--set', 'data.val_fraction=0.25']
    r = cli(prog, 'train', '--config', cfg, '--output-dir', tmp_path / 'run', *small, env={'NIFTI_DATA_DIR': str(data)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'codebook collapse' not in r.stderr
    rows = list(csv.DictReader(open(next((tmp_path / 'run' / 'logs').rglob('metrics.csv')))))
    val = [row for row in rows if row.get('val_psnr_fg')]
    assert len(val) == 2 and all(0 < float(v['val_psnr_fg']) < float(v['val_psnr']) for v in val)   # whole volumes: the head scores below the air
    if 'maskgit' in cfg:
        assert "fitted the patch codec's linear path" in r.stderr          # the recipe's patch codec starts from its fitted linear code
        # 3 training volumes × 4 crops / batch 4 = 3 steps an epoch; the validation volume's tokens (whole: ≥ 10×11×9, a crop has 4³) use a spread of codes
        assert float(val[-1]['val_tokens']) >= 10 * 11 * 9 and float(val[-1]['val_perplexity']) >= 16
        epoch = [row for row in rows if row.get('train/epoch_perplexity')]
        assert len(epoch) == 2 and float(epoch[-1]['train/epoch_perplexity']) >= 16
