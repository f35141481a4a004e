"""MedGen's modes (seed 002) on 2-D phantom slices after fixed step budgets: does the mask steer the image?

1. Trains, in pixel space with rectified flow and the same UNet and step budget: a bravo model (FLAIR for a tumour mask), a dual
   model (a T1 / T1ce pair for a mask), and for each an unconditioned model of the same images (mode image), and a seg model.
2. For requested tumour masks of held-out phantom slices, generates with the bravo (dual) model and, with the same seeds, with the
   unconditioned model, and measures the Dice between the requested mask and the lesion a fixed segmenter finds in the generated
   image (FLAIR for bravo; T1 and T1ce together for dual). Pass: the paired gain over the unconditioned model exceeds two standard
   errors, as in the ControlNet benchmarks. The segmenters (small MONAI UNets, 2-D) are trained on real slices; their Dice on real
   held-out slices is reported as the ceiling.
3. The seg model: the share of generated masks with a lesion and their mean lesion area, against real masks of the slices it was
   trained on, and the labels they use. All models use MedGen's MSE loss (with L1, the median, seg masks collapsed to background).

    python bench/bench_medgen.py                          # ~10 min on 2 CPU cores
    python bench/bench_medgen.py --size 64 --steps 6000 --channels 32 64 64   # larger, on a GPU
"""
from __future__ import annotations
import argparse, json, sys, tempfile, time
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import default_device, machine_info, markdown_table, fit_segmenter, tstr_row
from prod9.evaluation import TensorPairs

from prod9.phantoms import make_phantom
from prod9.metrics import dice_scores, paired_gain
from prod9.training.engine import fit_stage, budget_trainer_config
from prod9.training.cache import pre_encode, load_tokens
from prod9.training.diffusion import DiffusionStageConfig, MAISIDiffusionLightning, LatentDataset, mask_labels
from torch.utils.data import DataLoader

def accel(d): return 'gpu' if str(d).startswith('cuda') else 'cpu'

def phantom_slice(size, seed, mods):
    "The axial slice with the most tumour of a phantom (size, size, size // 2): (image channels, labels)."
    ph = make_phantom((size, size, size // 2), seed)
    z = int(np.argmax((ph['seg'] > 0).sum((0, 1))))
    return np.stack([ph[m][:, :, z] for m in mods]), ph['seg'][:, :, z]

def train(out, name, mode, mods, size, n_cases, steps, device, channels=(16, 32, 32)):
    data = {'source': 'phantoms', 'num_cases': n_cases, 'shape': [size, size, size // 2], 'roi_size': [size, size], 'spatial_dims': 2,
            'slices_per_volume': 6, 'batch_size': 16, 'val_fraction': 0.1, 'modalities': mods, 'stack_modalities': len(mods) > 1}
    cfg = DiffusionStageConfig(space='pixel', mode=mode, output_dir=str(out / name), latent_cache_dir=str(out / f'cache_{name}'), data=data,
        model={'num_channels': list(channels), 'num_res_blocks': 1, 'attention_levels': [False, False, True], 'num_head_channels': [0, 0, channels[-1] // 2],
               'norm_num_groups': 8},
        scheduler={'strategy': 'rflow', 'num_inference_steps': 20, 'base_img_size_numel': size * size},
        training={'lr': 5e-4, 'warmup_steps': 50, 'loss': 'mse'},       # MedGen's loss; L1 (the median) drove seg masks to background
        sliding_window={'roi_size': [size, size]}, trainer=budget_trainer_config(accel(device)))
    paths = pre_encode(None, cfg.data, cfg.sliding_window, cfg.cache_dir, store_masks=True, log=lambda *_: None)
    info = load_tokens(paths['train'])
    torch.manual_seed(0); m = MAISIDiffusionLightning.from_cache(cfg, info)
    t0 = time.perf_counter()
    tr = fit_stage(m, cfg, train=DataLoader(LatentDataset(paths['train'], 1.0), batch_size=16, shuffle=True), enable_model_summary=False, max_steps=steps)
    return m.eval().to(device), tr.global_step, time.perf_counter() - t0

def train_segmenter_2d(size, channels, n_cases, steps, device):
    "A small 2-D MONAI UNet: phantom slices (the given modalities as channels) → tumour (NCR ∪ ED ∪ ET), on real slices."
    from monai.networks.nets import UNet
    torch.manual_seed(0)
    net = UNet(2, len(channels), 2, channels=(16, 32, 64), strides=(2, 2), num_res_units=1).to(device)
    xs, ys = [], []
    for i in range(n_cases):
        ph = make_phantom((size, size, size // 2), 600_000 + i)
        for z in np.linspace(0.3, 0.7, 6) * (size // 2 - 1):
            z = int(round(z)); xs.append(np.stack([ph[m][:, :, z] for m in channels])); ys.append((ph['seg'][:, :, z] > 0).astype(np.int64))
    X, Y = torch.from_numpy(np.stack(xs)).float().to(device), torch.from_numpy(np.stack(ys))[:, None].to(device)
    return fit_segmenter(net, X, Y, steps, 16)

@torch.no_grad()
def seg_dice(net, imgs, labels): return dice_scores(net(imgs).argmax(1, keepdim=True), (labels > 0).long())

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--size', type=int, default=32); p.add_argument('--num-cases', type=int, default=48)
    p.add_argument('--steps', type=int, default=1000, help='training steps of each diffusion model (batch 16)')
    p.add_argument('--channels', type=int, nargs='+', default=[16, 32, 32], help='UNet widths (three levels)')
    p.add_argument('--segmenter-steps', type=int, default=800, help='steps of each segmenter (batch 16)')
    p.add_argument('--samples', type=int, default=32, help='requested masks per Dice figure')
    p.add_argument('--tstr-steps', type=int, default=300, help='train-on-synthetic: steps of each segmenter arm (batch 2)')
    p.add_argument('--tstr-test', type=int, default=16, help='train-on-synthetic: held-out real slices scored')
    p.add_argument('--device', default=default_device()); p.add_argument('--markdown'); p.add_argument('--json')
    a = p.parse_args(argv); dev = a.device
    rows, res, walls, tstr_rows = [], {}, {}, []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for mode, mods in (('bravo', ['FLAIR']), ('dual', ['T1', 'T1ce'])):
            cond, s1, w1 = train(out, mode, mode, mods, a.size, a.num_cases, a.steps, dev, a.channels)
            base, s2, w2 = train(out, f'{mode}_uncond', 'image', mods, a.size, a.num_cases, a.steps, dev, a.channels)
            walls[mode] = (s1, w1, s2, w2)
            net = train_segmenter_2d(a.size, mods, a.num_cases, a.segmenter_steps, dev)
            real, masks = zip(*[phantom_slice(a.size, 930_000 + i, mods) for i in range(a.samples)])
            real = torch.from_numpy(np.stack(real)).float().to(dev); masks = torch.from_numpy(np.stack(masks))[:, None].long().to(dev)
            gen_c = cond.decode(cond.generate_latents(a.samples, seed=0, mask=masks))
            gen_u = base.decode(base.generate_latents(a.samples, seed=0))
            d_c, d_u, d_real = seg_dice(net, gen_c, masks), seg_dice(net, gen_u, masks), seg_dice(net, real, masks)
            gain, se = paired_gain(d_c, d_u)
            ch = mods.index('T1ce') if 'T1ce' in mods else 0            # the channel the one-channel TSTR segmenter sees (the lesion shows in FLAIR, T1ce)
            pairs = lambda seeds: TensorPairs(*[torch.from_numpy(np.stack(v)) for v in zip(*[(x[ch:ch + 1], y[None]) for x, y in (phantom_slice(a.size, q, mods) for q in seeds)])])
            tstr_rows.append(tstr_row(f"MedGen {mode} ({mods[ch]} of the generated {'+'.join(mods)} for a requested mask)",
                                      TensorPairs(gen_c[:, ch:ch + 1].clamp(0, 1).cpu(), masks.cpu()), pairs(range(920_000, 920_000 + a.samples)),
                                      pairs(range(940_000, 940_000 + a.tstr_test)), a.tstr_steps, dev))
            res[mode] = {'dice_conditioned': float(d_c.mean()), 'dice_unconditioned': float(d_u.mean()), 'gain': gain, 'se': se, 'dice_real': float(d_real.mean())}
            rows += [{'mode': mode, 'metric': f'Dice(requested mask, lesion the segmenter finds in the generated {"+".join(mods)}), mean', 'value': f"{d_c.mean():.3f}", 'result': ''},
                     {'mode': mode, 'metric': 'the same for the unconditioned model, same masks and seeds', 'value': f"{d_u.mean():.3f}", 'result': ''},
                     {'mode': mode, 'metric': f'paired gain over {a.samples} masks (± standard error)', 'value': f"{gain:+.3f} ± {se:.3f}",
                      'result': 'pass (> 2 standard errors)' if gain > 2 * se else f"FAIL ({gain / se:.1f} standard errors)" if se > 0 else 'FAIL'},
                     {'mode': mode, 'metric': 'segmenter on the real slices of those masks (ceiling)', 'value': f"{d_real.mean():.3f}", 'result': ''}]
        seg, s3, w3 = train(out, 'seg', 'seg', ['FLAIR'], a.size, a.num_cases, a.steps, dev, a.channels)
        walls['seg'] = (s3, w3)
        gen = mask_labels(seg.decode(seg.generate_latents(a.samples, seed=0)), [1, 2, 3]).cpu()
        fr = np.linspace(0.3, 0.7, 6)             # the slices the seg model was trained on: 6 per volume, 30-70 % of the depth
        real_masks = torch.from_numpy(np.stack([make_phantom((a.size, a.size, a.size // 2), 930_000 + i // 6)['seg'][:, :, int(round(fr[i % 6] * (a.size // 2 - 1)))]
                                                for i in range(a.samples)]))
        area = lambda m: (m > 0).flatten(1).float().mean(1)
        res['seg'] = {'with_lesion': float((area(gen) > 0).float().mean()), 'with_lesion_real': float((area(real_masks) > 0).float().mean()),
                      'area_generated': float(area(gen).mean()),
                      'area_real': float(area(real_masks).mean()), 'labels': sorted(int(v) for v in torch.unique(gen))}
        rows += [{'mode': 'seg', 'metric': 'masks with a lesion, generated / real slices of the training kind', 'value': f"{res['seg']['with_lesion']:.0%} / {res['seg']['with_lesion_real']:.0%}", 'result': ''},
                 {'mode': 'seg', 'metric': 'mean lesion area, generated / real (share of the slice)', 'value': f"{res['seg']['area_generated']:.3f} / {res['seg']['area_real']:.3f}", 'result': ''},
                 {'mode': 'seg', 'metric': 'labels used', 'value': ', '.join(map(str, res['seg']['labels'])), 'result': ''}]
    m = machine_info(dev)
    budget = '; '.join(f"{k}: {v[0]} steps ({v[1]:.0f} s)" + (f", unconditioned {v[2]} steps ({v[3]:.0f} s)" if len(v) > 2 else '') for k, v in walls.items())
    text = (f"### MedGen's modes on 2-D phantom slices ({a.size} × {a.size}, pixel space, rectified flow, 20 sampling steps, UNet {'·'.join(map(str, a.channels))})\n\n"
            f"{m['date']}, {m['device']} ({m['cpu_threads']} threads), torch {m['torch']}, MONAI {m['monai']}. Budgets (batch 16): {budget}. "
            f"Segmenters: {a.segmenter_steps} steps on real slices.\n\n" + markdown_table(rows) +
            "\n\n**Train on synthetic, test on real** (`prod9-evaluate tstr`'s computation, 2-D): one small MONAI UNet trained for the same steps "
            "on each model's (generated slice, requested mask) pairs, on as many real phantom slices, and on both; Dice on held-out real slices "
            "(Med-DDPM's ratio for comparison: 0.62 / 0.65 = 95 %):\n\n" + markdown_table(tstr_rows))
    print(text)
    if a.markdown: Path(a.markdown).parent.mkdir(parents=True, exist_ok=True); Path(a.markdown).write_text(text + '\n')
    if a.json: Path(a.json).write_text(json.dumps({'machine': m, 'results': res, 'tstr': tstr_rows}, indent=1))

if __name__ == '__main__': main()
