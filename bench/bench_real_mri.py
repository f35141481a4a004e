"""Reconstruction on real MRI: FSQ autoencoders and the MAISI KL VAE, trained on real T1 volumes, tested on another.

Training volumes (available offline):
  * Colin27 ("ch2"), 1 mm T1 — Debian package `mricron-data`: /usr/share/mricron/templates/ch2.nii.gz
  * MNI152 2009a nonlinear symmetric T1 template, 1 mm — PyPI `nilearn` (bundled, no download)
Held-out test volume: the small real T1 of ITK's examples (128 × 128 × 62, 2 × 2 × 3 mm) — Debian package
`insighttoolkit5-examples`: /usr/share/doc/insighttoolkit5-examples/examples/Data/KmeansTest_T1UCharRaw.nii.gz

All volumes go through prod9's MONAI chain (RAS, resampled to `--spacing` mm, 0.5–99.5 percentile scaling to [0, 1]);
each model trains with prod9's packaged real-MRI recipe (`maskgit/nifti/stage1/real_mri.yaml`, `maisi/autoencoder/real_mri_vae.yaml`:
foreground crops, warm-up then cosine) for the same number of optimiser steps, deterministically (seeded data, crops and
weights), and reconstructs the whole test volume with sliding-window inference every `--eval-every` steps. Plain trilinear
×4 downsampling and upsampling of the test volume is a row of the same table: a learned codec that does not beat it has not
learned anything useful. Reported: PSNR, SSIM and MS-SSIM (MONAI metrics) against the compression ratio (input voxels per
token / per latent value) and bits per voxel, over the whole volume and, for PSNR and SSIM, inside the head (air is about
three quarters of the test volume); and, for FSQ, the share of the codebook the test volume's tokens use. The curves
(PSNR inside the head and codebook use against steps) go to `--curves`. Every row also reports the blockiness inside the head
(`prod9.metrics.blockiness`: the mean |difference| across the 4-voxel token grid over the mean inside blocks; the test volume's own
is in the text above the table).

`--cli` measures the packaged MaskGiT recipe as a user runs it instead: `prod9-train-autoencoder train --config
maskgit/nifti/stage1/real_mri.yaml` with nothing but NIFTI_DATA_DIR (Colin27, Colin27 'better' and MNI152 2009a: the folder's
split holds one out for validation) and PROD9_OUTPUT_DIR set, the exported `autoencoder.safetensors` scored on the test volume.

    sudo apt-get install mricron-data insighttoolkit5-examples && pip install nilearn
    python bench/bench_real_mri.py                        # ~20 min on 2 CPU cores (3 models × 1,000 steps + evaluations)
    python bench/bench_real_mri.py --scale large          # 8,000 steps per model at 64^3 crops: a GPU
    python bench/bench_real_mri.py --cli                  # the packaged recipe through the CLI with its defaults
"""
from __future__ import annotations
import argparse, json, math, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import default_device, machine_info, markdown_table

from prod9.data import volume_transforms
from prod9.config import SlidingWindowConfig
from prod9.autoencoder.inference import AutoencoderInferenceWrapper
from prod9.training.autoencoder_fsq import AutoencoderStageConfig, AutoencoderFSQLightning
from prod9.training.engine import fit_stage, budget_trainer_config
from prod9.config import load_config, config_path
from prod9.data import datamodule_from_config
from prod9.metrics import foreground_mask, masked_psnr_ssim, blockiness
from prod9.files import read_lightning_checkpoint
from prod9.loader import load
import lightning as L
from prod9.training.maisi_vae import MAISIVAEStageConfig, MAISIVAELightning
from monai.metrics import PSNRMetric, SSIMMetric, MultiScaleSSIMMetric

COLIN27 = Path('/usr/share/mricron/templates/ch2.nii.gz')
COLIN27_BETTER = Path('/usr/share/mricron/templates/ch2better.nii.gz')   # the same subject, another average: --cli's third volume
ITK_T1 = Path('/usr/share/doc/insighttoolkit5-examples/examples/Data/KmeansTest_T1UCharRaw.nii.gz')
INSTALL = "sudo apt-get install mricron-data insighttoolkit5-examples && pip install nilearn"

def data_files() -> dict:
    "Paths of the training and test volumes; a clear error naming the package for each missing one."
    missing = [f"{p} (Debian package {pkg})" for p, pkg in ((COLIN27, 'mricron-data'), (ITK_T1, 'insighttoolkit5-examples')) if not p.exists()]
    try:
        import nilearn.datasets  # noqa: F401  (MNI152 2009a ships inside the nilearn wheel)
    except ImportError: missing.append("MNI152 2009a template (PyPI package nilearn)")
    if missing: raise SystemExit("real-MRI benchmark data missing:\n  " + "\n  ".join(missing) + f"\ninstall with: {INSTALL}")
    return {'train': [COLIN27, 'mni152'], 'test': ITK_T1, 'cli': [COLIN27, COLIN27_BETTER, 'mni152']}

def materialise(files: dict, folder: Path) -> dict:
    "Write the nilearn template to a NIfTI file so every volume goes through the same loader."
    from nilearn.datasets import load_mni152_template
    out = {'train': [], 'test': files['test'], 'cli': []}
    for key in ('train', 'cli'):
        for f in files[key]:
            if f == 'mni152':
                p = folder / 'mni152_2009a_t1.nii.gz'
                if not p.exists(): load_mni152_template(resolution=1).to_filename(p)
                f = p
            out[key].append(Path(f))
    return out

def preprocess(path, spacing) -> torch.Tensor:
    "prod9's chain (RAS → spacing → percentile scaling) on a whole volume, padded to a multiple of 8."
    t = volume_transforms(None, train=False, spacing=spacing)
    x = torch.as_tensor(np.asarray(t({'image': str(path)})['image']), dtype=torch.float32)
    pad = [(-s) % 8 for s in x.shape[1:]]
    return torch.nn.functional.pad(x, [p for s in reversed(pad) for p in (0, s)])

def accel(d): return 'gpu' if str(d).startswith('cuda') else 'cpu'

RECIPES = {
    # name: (packaged config, stage config class, lightning class, overrides of its sections)
    'FSQ patch codec, ×4 (levels 8·8·8·6·5)': ('maskgit/nifti/stage1/real_mri.yaml', AutoencoderStageConfig, AutoencoderFSQLightning, {}),
    'FSQ conv codec, ×4 (levels 8·8·8·6·5)': ('maskgit/nifti/stage1/real_mri.yaml', AutoencoderStageConfig, AutoencoderFSQLightning,
                                             {'model': {'architecture': 'conv', 'channels': [16, 32, 64], 'num_res_blocks': 1}, 'init': {'method': 'none'}}),
    'FSQ conv codec, ×2 (levels 8·5·5·5)': ('maskgit/nifti/stage1/real_mri.yaml', AutoencoderStageConfig, AutoencoderFSQLightning,
                                           {'model': {'architecture': 'conv', 'channels': [16, 32], 'num_res_blocks': 1, 'levels': [8, 5, 5, 5]},
                                            'init': {'method': 'none'}}),
    'MAISI KL VAE, ×4 (4 latent channels)': ('maisi/autoencoder/real_mri_vae.yaml', MAISIVAEStageConfig, MAISIVAELightning, {}),
}
MODELS = list(RECIPES)
DEFAULT_MODELS = [m for m in MODELS if '×2' not in m]     # ×2 (4× the tokens): --models
TRILINEAR = 'trilinear ×4 down and up (baseline)'
HEAD_THRESHOLD, HEAD_DILATION = 0.05, 2

def head_mask(x): return foreground_mask(x, HEAD_THRESHOLD, HEAD_DILATION)

def compression(ae) -> tuple[float, float, str]:
    "(voxels per token or latent value, bits per voxel, what one latent position is)."
    f3 = ae.downsample_factor ** 3
    if hasattr(ae, 'codebook_size'):
        return f3, math.log2(ae.codebook_size) / f3, f"1 token of {ae.codebook_size} codes per {f3} voxels"
    c = ae.latent_channels
    return f3 / c, 32 * c / f3, f"{c} float32 values per {f3} voxels"

@torch.no_grad()
def reconstruct(ae, x, patch):
    "Whole-volume reconstruction through the sliding window (windows of 2 × patch), and the token grid for FSQ."
    sw = AutoencoderInferenceWrapper(ae, SlidingWindowConfig(roi_size=[patch * 2] * 3, overlap=0.25, sw_batch_size=1, mode='gaussian'))
    z = sw.encode(x)[0]; idx = None
    if hasattr(ae, 'quantize'): z = ae.quantize(z); idx = ae.embed(z)
    return sw.decode(z, output_size=x.shape[2:]).clamp(0, 1), idx

def scores(r, x, head) -> dict:
    p, s = masked_psnr_ssim(r[0].cpu(), x[0].cpu(), head)
    return {'psnr': float(PSNRMetric(1.0)(r, x).mean()), 'psnr_head': p, 'ssim_head': s}

class Curves(L.Callback):
    "Every `every` optimiser steps (and at the end): PSNR inside the head on the test volume, the codebook share its tokens use, the training perplexity."
    def __init__(self, x, head, patch, every): self.x, self.head, self.patch, self.every, self.rows = x, head, patch, every, []
    def record(self, trainer, m):
        ae = m.autoencoder; was = ae.training; ae.eval()
        r, idx = reconstruct(ae, self.x.to(m.device), self.patch)
        row = {'step': trainer.global_step, **scores(r.cpu(), self.x, self.head)}
        if idx is not None: row['codebook_usage'] = float(torch.unique(idx).numel() / ae.codebook_size)
        tp = trainer.callback_metrics.get('train/perplexity')
        if tp is not None: row['train_perplexity'] = float(tp)
        self.rows.append(row); ae.train(was)
    def on_train_batch_end(self, trainer, m, *a):
        if trainer.global_step % self.every == 0: self.record(trainer, m)

def recipe_config(name, out, data_dir, patch, steps, device):
    cfg_file, cfg_cls, _, over = RECIPES[name]
    import os
    os.environ['NIFTI_DATA_DIR'] = str(data_dir)            # the packaged configs read the folder from it
    raw = load_config(config_path(cfg_file), cfg_cls).model_dump()
    raw['output_dir'] = str(out / (name.split(',')[0].replace(' ', '_') + '_x' + name.split('×')[1][:1]))
    raw['seed'] = 0
    raw['data'].update(val_fraction=0.0, roi_size=[patch] * 3, num_workers=0)
    for section, values in over.items(): raw[section].update(values)
    raw['callbacks'] = {}
    raw['trainer'] = budget_trainer_config(accel(device), max_steps=steps, log_every_n_steps=10, limit_val_batches=0)
    return cfg_cls.model_validate(raw)

def train_and_eval(name, out, data_dir, test, head, patch, steps, every, device):
    from monai.utils import set_determinism
    cfg = recipe_config(name, out, data_dir, patch, steps, device)
    set_determinism(0); torch.manual_seed(0)
    m = RECIPES[name][2](cfg.model_dump())
    dm = datamodule_from_config(cfg.data); dm.setup()
    curves = Curves(test[None], head, patch, every)
    t = time.time()
    tr = fit_stage(m, cfg, train=dm.train_dataloader(), monitor='val_l1', quiet=True, callbacks=[curves], num_sanity_val_steps=0)
    train_s = time.time() - t
    if not curves.rows or curves.rows[-1]['step'] != tr.global_step: curves.record(tr, m)
    row, r = model_row(name, m.autoencoder, test, head, patch, tr.global_step, train_s, device)
    return row, r, curves.rows

def model_row(name, ae, test, head, patch, steps, train_s, device):
    "The table's row for a trained autoencoder, and its reconstruction of the whole test volume."
    ae = ae.eval().to(device)
    x = test[None].to(device)
    r, idx = reconstruct(ae, x, patch)
    r, x = r.cpu(), x.cpu()
    vpl, bpv, what = compression(ae)
    ms = MultiScaleSSIMMetric(3, data_range=1.0, kernel_size=7, weights=(0.0448, 0.2856, 0.3001))  # 3 scales fit a 2 mm head
    sc = scores(r, x, head)
    return ({'model': name, 'voxels per token or latent value': vpl, 'bits per voxel': f"{bpv:.3f}", 'latent': what,
             'params (M)': f"{sum(p.numel() for p in ae.parameters()) / 1e6:.2f}", 'train steps': steps, 'train s': f"{train_s:.0f}",
             'PSNR (dB)': f"{sc['psnr']:.2f}", 'SSIM': f"{float(SSIMMetric(3, data_range=1.0)(r, x).mean()):.3f}", 'MS-SSIM': f"{float(ms(r, x).mean()):.3f}",
             'PSNR in head (dB)': f"{sc['psnr_head']:.2f}", 'SSIM in head': f"{sc['ssim_head']:.3f}", 'blockiness in head': f"{blockiness(r, 4, head):.2f}",
             'codebook used by the test volume': f"{float(torch.unique(idx).numel() / ae.codebook_size):.1%}" if idx is not None else '–'}, r)

CLI_CONFIG = 'maskgit/nifti/stage1/real_mri.yaml'
CLI_NAME = 'FSQ patch codec, ×4: the packaged recipe through the CLI'

def cli_train_and_eval(out, data_dir, test, head, patch, device):
    "Train `CLI_CONFIG` exactly as a user runs it (only the data and output folders set) and score its exported model on the test volume."
    exe = shutil.which('prod9-train-autoencoder')
    if exe is None: raise SystemExit("prod9-train-autoencoder is not on PATH: pip install -e . first")
    env = {**os.environ, 'NIFTI_DATA_DIR': str(data_dir), 'PROD9_OUTPUT_DIR': str(out)}
    t = time.time()
    subprocess.run([exe, 'train', '--config', CLI_CONFIG], env=env, check=True)
    train_s = time.time() - t
    run = out / 'real_mri_stage1'
    steps = read_lightning_checkpoint(run / 'last.ckpt').get('global_step')
    best = read_lightning_checkpoint(run / 'best.ckpt').get('global_step')
    row, r = model_row(CLI_NAME, load(run / 'autoencoder.safetensors', expect='AutoencoderFSQ'), test, head, patch, steps, train_s, device)
    row['train steps'] = f"{steps} (best.ckpt: {best})"
    return row, r

def trilinear_row(test, head):
    x = test[None]
    d = torch.nn.functional.interpolate(x, scale_factor=0.25, mode='trilinear', align_corners=False)
    r = torch.nn.functional.interpolate(d, size=x.shape[2:], mode='trilinear', align_corners=False).clamp(0, 1)
    ms = MultiScaleSSIMMetric(3, data_range=1.0, kernel_size=7, weights=(0.0448, 0.2856, 0.3001))
    sc = scores(r, x, head)
    return {'model': TRILINEAR, 'voxels per token or latent value': 64, 'bits per voxel': f"{32 / 64:.3f}", 'latent': '1 float32 value per 64 voxels',
            'params (M)': '0', 'train steps': 0, 'train s': '0', 'PSNR (dB)': f"{sc['psnr']:.2f}", 'SSIM': f"{float(SSIMMetric(3, data_range=1.0)(r, x).mean()):.3f}",
            'MS-SSIM': f"{float(ms(r, x).mean()):.3f}", 'PSNR in head (dB)': f"{sc['psnr_head']:.2f}", 'SSIM in head': f"{sc['ssim_head']:.3f}",
            'blockiness in head': f"{blockiness(r, 4, head):.2f}", 'codebook used by the test volume': '–'}, r

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--scale', choices=['cpu', 'large'], default='cpu', help="cpu: 1,000 steps at 32^3 crops; large: 8,000 steps at 64^3 (a GPU)")
    p.add_argument('--steps', type=int, help="optimiser steps per model (default: 1,000, or 8,000 at --scale large)")
    p.add_argument('--eval-every', type=int, help="steps between evaluations of the test volume (default: steps / 8)")
    p.add_argument('--spacing', type=float, default=2.0); p.add_argument('--patch', type=int)
    p.add_argument('--models', nargs='+', default=DEFAULT_MODELS, choices=MODELS)
    p.add_argument('--device', default=default_device()); p.add_argument('--markdown'); p.add_argument('--json'); p.add_argument('--figure')
    p.add_argument('--cli', action='store_true', help=f"train {CLI_CONFIG} through prod9-train-autoencoder with its defaults instead of --models")
    p.add_argument('--curves', help="PNG of PSNR inside the head and codebook use against steps")
    a = p.parse_args(argv)
    steps = a.steps or (8000 if a.scale == 'large' else 1000)
    patch = a.patch or (64 if a.scale == 'large' else 32)
    every = a.eval_every or max(1, steps // 8)
    files = data_files()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp); files = materialise(files, out)
        folder = out / 'train'; folder.mkdir()
        for f in files['train']: (folder / Path(f).name).symlink_to(Path(f).resolve())
        sp = [a.spacing] * 3
        test = preprocess(files['test'], sp)
        head = head_mask(test)
        row, rec = trilinear_row(test, head)
        rows, recs, curves = [row], {'trilinear ×4': rec}, {}
        if a.cli:
            cli = out / 'cli'; cli.mkdir()
            for f in files['cli']: (cli / Path(f).name).symlink_to(Path(f).resolve())
            row, rec = cli_train_and_eval(out / 'cli_run', cli, test, head, patch, a.device)
            rows.append(row); recs[CLI_NAME] = rec; print(row, flush=True)
        for name in ([] if a.cli else a.models):
            row, rec, cv = train_and_eval(name, out, folder, test, head, patch, steps, every, a.device)
            rows.append(row); recs[name] = rec; curves[name] = cv; print(row, flush=True)
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    if a.figure:
        z = test.shape[-1] // 2
        fig, axs = plt.subplots(1, 1 + len(recs), figsize=(3 * (1 + len(recs)), 3.3))
        for ax, (t, v) in zip(axs, [('test T1 (ITK example)', test[0])] + [(n.split(' (')[0], r[0, 0]) for n, r in recs.items()]):
            ax.imshow(v[:, :, z].T, cmap='gray', origin='lower', vmin=0, vmax=1); ax.set_title(t, fontsize=8); ax.axis('off')
        fig.tight_layout(); Path(a.figure).parent.mkdir(parents=True, exist_ok=True); fig.savefig(a.figure, dpi=80)
    if a.curves:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
        for n, cv in curves.items():
            a1.plot([c['step'] for c in cv], [c['psnr_head'] for c in cv], marker='o', ms=3, label=n.split(' (')[0])
            if any('codebook_usage' in c for c in cv):
                a2.plot([c['step'] for c in cv], [100 * c['codebook_usage'] for c in cv], marker='o', ms=3, label=n.split(' (')[0])
        a1.axhline(float(rows[0]['PSNR in head (dB)']), color='k', ls='--', lw=1, label='trilinear ×4')
        a1.set(xlabel='optimiser step', ylabel='PSNR inside the head (dB)', title='held-out T1'); a1.legend(fontsize=7)
        a2.set(xlabel='optimiser step', ylabel='% of the codebook used', title="codes in the test volume's tokens"); a2.legend(fontsize=7)
        fig.tight_layout(); Path(a.curves).parent.mkdir(parents=True, exist_ok=True); fig.savefig(a.curves, dpi=80)
    m = machine_info(a.device)
    base = float(rows[0]['PSNR in head (dB)'])
    gains = '; '.join(f"{r['model'].split(' (')[0]}: {float(r['PSNR in head (dB)']) - base:+.2f} dB" for r in rows[1:])
    how = (f"The packaged recipe `{CLI_CONFIG}` trained through `prod9-train-autoencoder train` with the config's defaults (only NIFTI_DATA_DIR "
           f"and PROD9_OUTPUT_DIR set) on Colin27, Colin27 'better' and MNI152 2009a (the folder's split holds one out for validation); the exported "
           f"model (from best.ckpt) reconstructs the whole test volume with sliding windows of {patch * 2}³." if a.cli else
           f"Each model trained for {steps:,} optimiser steps (deterministic: seeded crops and weights) with prod9's packaged real-MRI recipe on "
           f"{patch}³ crops of Colin27 and MNI152 2009a (90 % centred on the head, batch 4, warm-up then cosine); the whole test volume "
           f"reconstructed with sliding windows of {patch * 2}³.")
    text = (f"### Reconstruction of a held-out real T1 (ITK example, {tuple(test.shape[1:])} at {a.spacing:g} mm)\n\n"
            f"{m['date']}, {m['device']} ({m['cpu_threads']} threads), torch {m['torch']}, MONAI {m['monai']}. {how} "
            f"The first row is plain trilinear ×4 downsampling and upsampling of the test volume. PSNR, SSIM and MS-SSIM are over "
            f"the whole volume; 'in head' only inside the head (test voxels above {HEAD_THRESHOLD:g}, dilated by {HEAD_DILATION} voxels, holes filled: "
            f"{float(head.float().mean()):.0%} of the volume). Blockiness in the head: the mean |difference| of neighbouring voxels across the "
            f"4-voxel token grid over the mean inside its blocks (the test volume's own: {blockiness(test, 4, head):.2f}). "
            f"Gain inside the head over trilinear: {gains}.\n\n" + markdown_table(rows))
    print(text)
    if a.markdown: Path(a.markdown).parent.mkdir(parents=True, exist_ok=True); Path(a.markdown).write_text(text + '\n')
    if a.json: Path(a.json).write_text(json.dumps({'machine': m, 'rows': rows, 'curves': curves, 'steps': steps, 'patch': patch}, indent=1))
    return rows

if __name__ == '__main__': main()
