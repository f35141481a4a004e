"""Shared helpers of prod9's benchmarks: peak memory, medians, machine description, Markdown tables.

Benchmarks report; they are not tests. Timings are medians of repeated runs, and comparisons are ratios
measured in the same process, because these machines are noisy."""
from __future__ import annotations
import os, platform, statistics, sys, threading, time, datetime
from pathlib import Path

# Run from a checkout, the benchmarks measure that checkout's prod9, even where an older editable install
# points elsewhere (entries on sys.path come before setuptools' editable finder).
_ROOT = Path(__file__).resolve().parent.parent
if (_ROOT / 'prod9' / '__init__.py').exists() and str(_ROOT) not in sys.path: sys.path.insert(1, str(_ROOT))

import torch
from prod9.metrics import volume_features, frechet_distance, mean_pairwise_msssim, dice_scores, paired_gain   # noqa: F401 (paired_gain: re-exported for the benches)

def rss_bytes() -> int:
    "Resident set size of this process (Linux /proc; falls back to ru_maxrss elsewhere)."
    try:
        with open('/proc/self/statm') as f: return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    except OSError:
        import resource; return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

class PeakMemory:
    """Peak memory of a block: CUDA allocator peak on a GPU device, else process RSS sampled every `interval` s.
    `.peak` is the absolute peak, `.delta` the rise over the level at entry (both bytes)."""
    def __init__(self, device='cpu', interval:float=0.002):
        self.device, self.interval = torch.device(device), interval
    def __enter__(self):
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device); torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
        else:
            self.start = self.peak = rss_bytes(); self._stop = threading.Event()
            def sample():
                while not self._stop.is_set():
                    self.peak = max(self.peak, rss_bytes()); time.sleep(self.interval)
            self._t = threading.Thread(target=sample, daemon=True); self._t.start()
        return self
    def __exit__(self, *exc):
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device); self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set(); self._t.join(); self.peak = max(self.peak, rss_bytes())
        self.delta = self.peak - self.start
        return False

def sync(device):
    if torch.device(device).type == 'cuda': torch.cuda.synchronize(device)

def median_time(fn, repeats:int=5, warmup:int=1, device='cpu') -> float:
    "Median wall time of `fn()` in seconds."
    for _ in range(warmup): fn()
    ts = []
    for _ in range(repeats):
        sync(device); t = time.perf_counter(); fn(); sync(device); ts.append(time.perf_counter() - t)
    return statistics.median(ts)

def matmul_peak_flops(n:int=2048, device='cpu', repeats:int=5) -> float:
    "Measured fp32 matmul FLOP/s on this machine now (the reference for utilisation figures)."
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    return 2 * n ** 3 / median_time(lambda: a @ b, repeats, warmup=2, device=device)

def default_device() -> str: return 'cuda' if torch.cuda.is_available() else 'cpu'

def machine_info(device='cpu') -> dict:
    import monai, lightning
    d = {'date': datetime.date.today().isoformat(), 'python': platform.python_version(), 'torch': torch.__version__,
         'monai': monai.__version__, 'lightning': lightning.__version__, 'cpu': platform.processor() or platform.machine(),
         'cpu_threads': torch.get_num_threads(), 'device': str(device)}
    if torch.device(device).type == 'cuda': d['gpu'] = torch.cuda.get_device_name(device)
    return d

def gib(b:float) -> str: return f"{b / 2**30:.2f} GiB"

def markdown_table(rows:list[dict], columns:list[str]|None=None) -> str:
    "Rows of dicts as a GitHub Markdown table."
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
    lines += ['| ' + ' | '.join(fmt(r.get(c, '')) for c in columns) + ' |' for r in rows]
    return '\n'.join(lines)

def autoencoder_max_steps(batches:int, adv_weight:float, adv_warmup:int) -> int:
    "Lightning's `max_steps` for `batches` stage-1 batches: it counts optimiser steps, two per batch once the discriminator trains."
    return batches + max(0, batches - adv_warmup) if adv_weight > 0 else batches

def real_volumes(size:int, seeds) -> dict:
    "Phantoms of `seeds` at `size`³ as `{modality: (N, 1, size, size, size) float tensor}` (each phantom made once for all modalities)."
    from prod9.config import MODALITIES
    from prod9.phantoms import make_phantom
    vols = {m: [] for m in MODALITIES}
    for s in seeds:
        ph = make_phantom((size,) * 3, s)
        for m in MODALITIES: vols[m].append(torch.from_numpy(ph[m]).float())
    return {m: torch.stack(v)[:, None] for m, v in vols.items()}

def quality_row(modality:str, gen, real, real_b, rec, rec_name:str) -> dict:
    "One row of the generation-quality tables: Fréchet distances (generated, oracle, reconstructions vs `real`) and MS-SSIM diversity."
    fr = volume_features(real)
    return {'modality': modality, 'Fréchet distance generated ↔ real': f"{frechet_distance(volume_features(gen), fr):.4f}",
            'Fréchet distance real B ↔ real A (oracle)': f"{frechet_distance(volume_features(real_b), fr):.4f}",
            f'Fréchet distance {rec_name} ↔ real': f"{frechet_distance(volume_features(rec), fr):.4f}",
            'MS-SSIM between generated volumes': f"{mean_pairwise_msssim(gen):.3f}",
            'MS-SSIM between real volumes': f"{mean_pairwise_msssim(real):.3f}"}

def train_segmenter(size, n_cases, steps, device, vae=None):
    """A small MONAI UNet: FLAIR volume → tumour (NCR ∪ ED ∪ ET), trained for `steps` batches of 4 on real phantoms and, with `vae`
    (any stage-1 model whose output starts with the reconstruction), on their reconstructions too: generated volumes are decoded,
    and a segmenter that has only seen sharp volumes misses lesions in decoded ones (it would score the decoder, not the conditioning)."""
    import numpy as np
    from monai.networks.nets import UNet
    from prod9.phantoms import make_phantom
    torch.manual_seed(0)
    net = UNet(3, 1, 2, channels=(8, 16, 32), strides=(2, 2), num_res_units=1).to(device)
    xs, ys = [], []
    for i in range(n_cases):
        ph = make_phantom((size,) * 3, 600_000 + i); xs.append(ph['FLAIR']); ys.append((ph['seg'] > 0).astype(np.int64))
    X, Y = torch.from_numpy(np.stack(xs))[:, None].float().to(device), torch.from_numpy(np.stack(ys))[:, None].to(device)
    if vae is not None:
        with torch.no_grad(): X, Y = torch.cat([X, vae(X)[0].clamp(0, 1)]), torch.cat([Y, Y])
    return fit_segmenter(net, X, Y, steps, 4)

def fit_segmenter(net, X, Y, steps:int, batch:int):
    "Train a segmenter `net` (image → background/tumour) on `X`, `Y` for `steps` random batches with MONAI's Dice-CE loss, reproducibly."
    from monai.losses import DiceCELoss
    opt, lossf = torch.optim.Adam(net.parameters(), 3e-3), DiceCELoss(to_onehot_y=True, softmax=True)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(X), (batch,), generator=g)
        loss = lossf(net(X[idx]), Y[idx]); opt.zero_grad(); loss.backward(); opt.step()
    return net.eval()

@torch.no_grad()
def dice(seg_net, vols, masks):
    "Dice of the lesion `seg_net` finds in `vols` against `masks`, one value per volume."
    return dice_scores(seg_net(vols).argmax(1, keepdim=True), masks)



def flop_counter():
    """`FlopCounterMode` that also counts PyTorch's CPU flash attention (`_scaled_dot_product_flash_attention_for_cpu` and its
    backward), which torch's own table leaves out: without it a transformer's attention FLOPs on CPU count as zero."""
    import torch.utils.flop_counter as fcm
    from torch.utils.flop_counter import FlopCounterMode
    aten = torch.ops.aten
    def fwd(q, k, v, *a, out_shape=None, **kw): return fcm.sdpa_flop_count(q, k, v)
    def bwd(g, q, k, v, *a, out_shape=None, **kw): return fcm.sdpa_backward_flop_count(g, q, k, v)
    extra = {getattr(aten, n): f for n, f in (('_scaled_dot_product_flash_attention_for_cpu', fwd),
                                              ('_scaled_dot_product_flash_attention_for_cpu_backward', bwd)) if hasattr(aten, n)}
    return FlopCounterMode(display=False, custom_mapping=extra)

def training_phantoms(data_cfg, size, modality='FLAIR'):
    "The training split's phantoms of a phantom data config (as `PhantomDataModule` splits it), one modality, (N, 1, size, size, size)."
    import numpy as np
    from prod9.data import PhantomDataModule
    from prod9.phantoms import make_phantom
    seeds = [c['phantom_seed'] for c in PhantomDataModule(data_cfg).split_cases()['train']]
    return torch.from_numpy(np.stack([make_phantom((size,) * 3, s)[modality] for s in seeds]))[:, None].float()

def phantom_pairs(size, seeds, modality='FLAIR'):
    "Real (image, tumour) pairs of phantoms at size³ as `prod9.evaluation.TensorPairs` (tumour = any label > 0)."
    import numpy as np
    from prod9.evaluation import TensorPairs
    from prod9.phantoms import make_phantom
    phs = [make_phantom((size,) * 3, s) for s in seeds]
    return TensorPairs(np.stack([p[modality] for p in phs])[:, None], np.stack([p['seg'] for p in phs])[:, None])

def tstr_row(model:str, syn, real, test, steps:int, device) -> dict:
    """Train-on-synthetic, test-on-real (`prod9.evaluation.train_on_synthetic`): the same segmenter and steps trained on real pairs,
    on the model's generated pairs and on both; Dice on held-out real volumes. One row of the benchmarks' TSTR table."""
    from prod9.evaluation import train_on_synthetic
    r = train_on_synthetic(real, syn, test, steps=steps, device=device)
    return {'model': model, 'training pairs (generated / real)': f"{len(syn)} / {len(real)}", 'held-out real': len(test), 'steps per arm': steps,
            'Dice real-only': f"{r['dice_real']:.3f}", 'Dice synthetic-only': f"{r['dice_synthetic']:.3f}",
            'Dice real + synthetic': f"{r['dice_real+synthetic']:.3f}", 'synthetic / real': f"{r['synthetic_to_real']:.0%}"}

def memorization_row(pipeline:str, gen, train, held) -> dict:
    """The memorization check (`prod9.evaluation.memorization`) of generated volumes against the training phantoms, with held-out real
    phantoms as the reference: each sample's highest normalised cross-correlation with any training volume (flips and shifts searched)."""
    from prod9.evaluation import memorization
    m = memorization(train.cpu(), gen.cpu(), None if held is None else held.cpu(), max_size=32)
    return {'pipeline': pipeline, 'generated': m['n_generated'], 'training volumes': m['n_train'],
            'held-out real → training (max / median)': f"{m['reference_similarity']['max']:.3f} / {m['reference_similarity']['median']:.3f}",
            'generated → training (max / median)': f"{m['generated_similarity']['max']:.3f} / {m['generated_similarity']['median']:.3f}",
            'threshold': f"{m['threshold']:.3f}", 'flagged': len(m['flagged'])}

def controlnet_figure(path, seg, real, gen_cn, gen_base, d_cn, d_base, n=4):
    "The first `n` requested masks (red outline) over the real FLAIR, the ControlNet's FLAIR and the unconditioned stage 2's (frozen transformer or diffusion UNet), at the slice with the most tumour."
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    n = min(n, len(seg))
    fig, axs = plt.subplots(3, n, figsize=(2 * n, 6.2))
    for i in range(n):
        z = int(seg[i, 0].sum((0, 1)).argmax())
        for r, (v, name) in enumerate(((real, 'real FLAIR'), (gen_cn, 'ControlNet'), (gen_base, 'stage 2, no mask'))):
            ax = axs[r, i]; ax.imshow(v[i, 0, :, :, z].T.cpu(), cmap='gray', origin='lower', vmin=0, vmax=1)
            ax.contour((seg[i, 0, :, :, z] > 0).T.cpu().numpy(), levels=[0.5], colors='red', linewidths=0.8)
            ax.set_xticks([]); ax.set_yticks([])
            if i == 0: ax.set_ylabel(name)
            if r: ax.set_title(f"Dice {(d_cn if r == 1 else d_base)[i]:.2f}", fontsize=8)
    fig.tight_layout(); Path(path).parent.mkdir(parents=True, exist_ok=True); fig.savefig(path, dpi=80); plt.close(fig)
