"""MaskGiT stage 1 benchmark: the FSQ autoencoder on phantoms after a fixed training-time budget.

Reports held-out PSNR/SSIM and codebook usage, the median training step time and its peak memory, and
sliding-window encode + decode time and peak memory on a BraTS-sized 240×240×155 volume.

    python bench/bench_stage1.py                    # CPU-sized: 64³ phantoms, 100 s of training
    python bench/bench_stage1.py --budget-s 600 --markdown docs/bench_stage1.md
"""
from __future__ import annotations
import argparse, json, statistics, sys, tempfile, time
from pathlib import Path
import numpy as np, torch
import lightning as L
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PeakMemory, default_device, machine_info, markdown_table, gib, sync

from prod9.training.autoencoder_fsq import AutoencoderStageConfig, AutoencoderFSQLightning
from prod9.training.engine import fit_stage, budget_trainer_config
from prod9.data import PhantomDataModule
from prod9.phantoms import make_phantom
from prod9.config import SlidingWindowConfig, MODALITIES
from prod9.autoencoder.inference import AutoencoderInferenceWrapper
from monai.metrics import PSNRMetric, SSIMMetric

class StepTimer(L.Callback):
    "Wall time of every training batch (forward, backward, optimiser steps)."
    def __init__(self): self.times = []
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx): sync(pl_module.device); self._t = time.perf_counter()
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        sync(pl_module.device); self.times.append(time.perf_counter() - self._t)

def train(size:int, budget_s:float, channels, levels, batch_size:int, num_cases:int, device:str, out:Path):
    cfg = AutoencoderStageConfig(output_dir=str(out), seed=0,
        data={'source': 'phantoms', 'num_cases': num_cases, 'shape': [size] * 3, 'roi_size': [size] * 3, 'batch_size': batch_size, 'val_fraction': 0.1},
        model={'channels': channels, 'levels': levels, 'norm_num_groups': 8}, training={'lr': 1e-3},
        trainer=budget_trainer_config('gpu' if device.startswith('cuda') else 'cpu', log_every_n_steps=10))
    torch.manual_seed(0)
    module, timer = AutoencoderFSQLightning(cfg), StepTimer()
    with PeakMemory(device) as mem:           # lr 1e-3 → 0 along a cosine over the budget (fit_stage's TimeCosineDecay)
        fit_stage(module, cfg, datamodule=PhantomDataModule(cfg.data), monitor='val_l1', budget_s=budget_s, callbacks=[timer],
                  enable_model_summary=False, output_dir=out)
    return module.autoencoder.eval().to(device), timer.times, mem, cfg      # Lightning hands the model back on the CPU

@torch.no_grad()
def evaluate(ae, size:int, n_cases:int, device:str) -> dict:
    "PSNR/SSIM/codebook usage on phantoms whose seeds were never trained on (every modality)."
    psnr, ssim = PSNRMetric(max_val=1.0), SSIMMetric(spatial_dims=3, data_range=1.0)
    ps, ss, used = [], [], []
    for i in range(n_cases):
        ph = make_phantom((size,) * 3, 900_000 + i)
        x = torch.from_numpy(np.stack([ph[m] for m in MODALITIES])[:, None]).float().to(device)
        recon, _, idx = ae(x)
        r = recon.clamp(0, 1)
        ps += psnr(r, x).flatten().tolist(); ss += ssim(r, x).flatten().tolist(); used.append(idx.flatten())
    used = torch.cat(used)
    counts = torch.bincount(used, minlength=ae.codebook_size).float(); p = counts / counts.sum()
    perplexity = float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
    return {'psnr': statistics.median(ps), 'ssim': statistics.median(ss), 'codebook_usage': float((counts > 0).float().mean()),
            'perplexity': perplexity, 'n_volumes': len(ps)}

@torch.no_grad()
def sliding_window(ae, shape, roi:int, overlap:float, device:str) -> dict:
    ph = make_phantom(shape, 123)
    x = torch.from_numpy(ph['T1'])[None, None].float()
    w = AutoencoderInferenceWrapper(ae, SlidingWindowConfig(roi_size=(roi,) * 3, overlap=overlap, sw_batch_size=1))
    x = x.to(device)
    with PeakMemory(device) as m_enc:
        sync(device); t = time.perf_counter(); z, _ = w.encode(x); sync(device); t_enc = time.perf_counter() - t
    with PeakMemory(device) as m_dec:
        sync(device); t = time.perf_counter(); y = w.decode(ae.quantize(z), output_size=shape)
        sync(device); t_dec = time.perf_counter() - t
    assert tuple(y.shape[2:]) == tuple(shape)
    return {'encode_s': t_enc, 'decode_s': t_dec, 'encode_peak': m_enc.peak, 'decode_peak': m_dec.peak,
            'input_bytes': x.numel() * 4}

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--size', type=int, default=64); p.add_argument('--budget-s', type=float, default=100)
    p.add_argument('--channels', type=int, nargs='+', default=[16, 32, 64]); p.add_argument('--levels', type=int, nargs='+', default=[8, 5, 5, 5])
    p.add_argument('--batch-size', type=int, default=2); p.add_argument('--num-cases', type=int, default=24)
    p.add_argument('--eval-cases', type=int, default=4); p.add_argument('--sw-shape', type=int, nargs=3, default=[240, 240, 155])
    p.add_argument('--sw-roi', type=int, default=64); p.add_argument('--sw-overlap', type=float, default=0.25)
    p.add_argument('--device', default=default_device()); p.add_argument('--markdown'); p.add_argument('--json')
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        ae, times, mem, cfg = train(a.size, a.budget_s, a.channels, a.levels, a.batch_size, a.num_cases, a.device, Path(tmp))
    ev = evaluate(ae, a.size, a.eval_cases, a.device)
    sw = sliding_window(ae, tuple(a.sw_shape), a.sw_roi, a.sw_overlap, a.device)
    steady = times[2:] or times
    f = ae.downsample_factor
    res = {'machine': machine_info(a.device), 'config': vars(a), 'train_steps': len(times), 'step_s_median': statistics.median(steady),
           'volumes_per_s': a.batch_size / statistics.median(steady), 'train_peak': mem.peak, **ev, **sw,
           'voxels_per_token': f ** 3, 'codebook_size': ae.codebook_size}
    rows = [
        {'metric': 'training budget, steps done (lr 1e-3 → 0 along a cosine over the budget)', 'value': f"{a.budget_s:.0f} s, {len(times)} steps of batch {a.batch_size} at {a.size}³"},
        {'metric': 'train step time (median)', 'value': f"{res['step_s_median']:.3f} s ({res['volumes_per_s']:.2f} volumes/s)"},
        {'metric': 'train peak memory (process)', 'value': gib(mem.peak)},
        {'metric': f'held-out PSNR (median of {ev["n_volumes"]} volumes)', 'value': f"{ev['psnr']:.2f} dB"},
        {'metric': 'held-out SSIM (median)', 'value': f"{ev['ssim']:.3f}"},
        {'metric': 'codebook usage / perplexity', 'value': f"{ev['codebook_usage']:.1%} of {ae.codebook_size} / {ev['perplexity']:.1f}"},
        {'metric': 'compression', 'value': f"{f**3} voxels per token ({f}× per axis)"},
        {'metric': f'sliding-window encode {"×".join(map(str, a.sw_shape))} (roi {a.sw_roi}³, overlap {a.sw_overlap})', 'value': f"{sw['encode_s']:.1f} s, peak {gib(sw['encode_peak'])}"},
        {'metric': 'sliding-window decode', 'value': f"{sw['decode_s']:.1f} s, peak {gib(sw['decode_peak'])}"},
        {'metric': 'sliding-window peak < 4 GiB', 'value': 'pass' if max(sw['encode_peak'], sw['decode_peak']) < 4 * 2**30 else
                   f"FAIL by {gib(max(sw['encode_peak'], sw['decode_peak']) - 4 * 2**30)}"},
    ]
    m = res['machine']
    text = (f"### MaskGiT stage 1 (FSQ autoencoder {a.channels}, levels {a.levels})\n\n"
            f"{m['date']}, {m['device']} ({m['cpu_threads']} threads), torch {m['torch']}, MONAI {m['monai']}\n\n" + markdown_table(rows))
    print(text)
    if a.markdown: Path(a.markdown).parent.mkdir(parents=True, exist_ok=True); Path(a.markdown).write_text(text + '\n')
    if a.json: Path(a.json).write_text(json.dumps(res, indent=1, default=str))
    return res

if __name__ == '__main__': main()
