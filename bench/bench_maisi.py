"""MAISI benchmark on phantoms after fixed step budgets.

1. VAE: held-out PSNR/SSIM (MONAI metrics) after a fixed number of training steps; compression ratio.
2. Sampling time per volume with the same UNet: rectified flow at 10 and 30 steps, DDPM at 1000 steps, and the ratios.
   (The UNet is trained with rectified flow; DDPM here measures time per volume only.)
3. ControlNet (mask + modality label): Dice between the requested tumour mask and the lesion a fixed segmenter finds in the
   generated FLAIR volume, against the same measure for the unconditioned diffusion model on the same masks and seeds
   (pass: the paired gain exceeds two standard errors). The segmenter is a small MONAI UNet trained for a fixed number of steps on
   real phantom FLAIR volumes and their VAE reconstructions (tumour = NCR ∪ ED ∪ ET); its Dice on real held-out volumes and
   on their VAE reconstructions (the ceiling for decoded volumes) is reported.
4. Generation quality per modality (label-conditional, rectified flow, 10 steps): Fréchet distance in the fixed feature space
   of `common.volume_features` and mean pairwise MS-SSIM diversity of generated against real held-out volumes, with a
   real-vs-real oracle and the VAE reconstructions (the best the diffusion model can do through this VAE) — the same
   measures as the MaskGiT stage-2 benchmark.

    python bench/bench_maisi.py                          # ~10 min on 2 CPU cores
"""
from __future__ import annotations
import argparse, json, statistics, sys, tempfile, time
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stage1_recipes import RECIPES
from common import (default_device, machine_info, markdown_table, median_time, real_volumes, quality_row, train_segmenter, dice, paired_gain,
                    training_phantoms, phantom_pairs, tstr_row, memorization_row, controlnet_figure)
from prod9.evaluation import TensorPairs

from prod9.config import MODALITIES
from prod9.phantoms import make_phantom
from prod9.data import PhantomDataModule
from prod9.training.engine import fit_stage, budget_trainer_config
from prod9.training.maisi_vae import MAISIVAEStageConfig, MAISIVAELightning, export_vae, load_vae
from prod9.training.cache import pre_encode, load_tokens
from prod9.training.diffusion import DiffusionStageConfig, MAISIDiffusionLightning, LatentDataset, latent_scale_factor
from prod9.diffusion.scheduler import NoiseSchedulerConfig
from prod9.training.controlnet import ControlNetStageConfig, ControlNetLightning, ControlDataset
from prod9.data import mask_condition
from monai.metrics import PSNRMetric, SSIMMetric
from torch.utils.data import DataLoader

FLAIR = MODALITIES.index('FLAIR')
def accel(d): return 'gpu' if str(d).startswith('cuda') else 'cpu'
def quiet(device): return budget_trainer_config(accel(device))

def train_vae(out, data, steps, device, recipe='vae_x4'):
    "The VAE of a MAISI recipe of `bench_stage1_recipes.RECIPES`, trained for `steps` batches."
    pipeline, model, loss, lr, _ = RECIPES[recipe]
    if pipeline != 'maisi': raise SystemExit(f"--vae-recipe {recipe} is a {pipeline} recipe; choose one of {[k for k, v in RECIPES.items() if v[0] == 'maisi']}")
    cfg = MAISIVAEStageConfig(output_dir=str(out / 'vae'), data=data, model=model, loss=loss, training={'lr': lr}, trainer=quiet(device))
    torch.manual_seed(0); m = MAISIVAELightning(cfg)
    t0 = time.perf_counter()
    fit_stage(m, cfg, datamodule=PhantomDataModule(cfg.data), monitor='val_l1', enable_model_summary=False, max_steps=steps)
    return export_vae(m.autoencoder, cfg.model, out / 'vae.safetensors'), m.autoencoder.eval(), time.perf_counter() - t0

@torch.no_grad()
def eval_vae(vae, size, n, device):
    ps, ss = [], []
    for i in range(n):
        ph = make_phantom((size,) * 3, 800_000 + i)
        x = torch.from_numpy(np.stack([ph[m] for m in MODALITIES])[:, None]).float().to(device)
        r = vae(x)[0].clamp(0, 1)
        ps += PSNRMetric(1.0)(r, x).flatten().tolist(); ss += SSIMMetric(3, data_range=1.0)(r, x).flatten().tolist()
    return statistics.median(ps), statistics.median(ss)

def train_diffusion(out, vae_path, data, steps, device):
    cfg = DiffusionStageConfig(vae_path=str(vae_path), output_dir=str(out / 'diffusion'), latent_cache_dir=str(out / 'latents'), data=data,
        model={'num_channels': [32, 64], 'num_res_blocks': 1, 'attention_levels': [False, True], 'num_head_channels': 16, 'norm_num_groups': 8, 'conditional': True},
        scheduler={'base_img_size_numel': 512}, training={'lr': 5e-4, 'warmup_steps': 20}, sliding_window={'roi_size': data['roi_size'], 'overlap': 0.25},
        trainer=quiet(device))
    paths = pre_encode(vae_path, cfg.data, cfg.sliding_window, cfg.cache_dir, device=device, log=lambda *_: None, store_masks=True)
    info = load_tokens(paths['train']); sf = latent_scale_factor(info)
    torch.manual_seed(0)
    m = MAISIDiffusionLightning.from_cache(cfg, info, sf)
    t0 = time.perf_counter()
    tr = fit_stage(m, cfg, train=DataLoader(LatentDataset(paths['train'], sf), batch_size=8, shuffle=True), enable_model_summary=False, max_steps=steps)
    return m.eval().to(device), paths, info, cfg, tr.global_step, time.perf_counter() - t0

def train_controlnet(out, base, paths, info, cfg, steps, device, weighted_loss=100.0):
    ccfg = ControlNetStageConfig(**{**cfg.model_dump(), 'output_dir': str(out / 'controlnet'), 'diffusion_path': 'in-memory',
                                   'controlnet': {'control_type': 'mask+label', 'weighted_loss': weighted_loss}, 'training': {'lr': 5e-4, 'warmup_steps': 20}})
    torch.manual_seed(0)
    m = ControlNetLightning.from_base(ccfg, base, info['downsample_factor'])
    t0 = time.perf_counter()
    tr = fit_stage(m, ccfg, train=DataLoader(ControlDataset(paths['train'], base.scale_factor, ccfg.controlnet, base.class_names), batch_size=8, shuffle=True),
                   enable_model_summary=False, max_steps=steps)
    return m.eval().to(device), tr.global_step, time.perf_counter() - t0

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--size', type=int, default=32); p.add_argument('--num-cases', type=int, default=48)
    # step budgets, not time budgets, so two runs train the same models (the defaults take ~2, 2.5, 2.5 and 1 min on 2 CPU cores)
    p.add_argument('--vae-steps', type=int, default=300, help='VAE training batches (batch 4)')
    p.add_argument('--vae-recipe', default='vae_x4', choices=[k for k, v in RECIPES.items() if v[0] == 'maisi'],
                   help="the VAE's recipe (bench_stage1_recipes.py's table)")
    p.add_argument('--diffusion-steps', type=int, default=2500, help='diffusion UNet steps (batch 8 of latents)')
    p.add_argument('--controlnet-steps', type=int, default=900, help='ControlNet steps (batch 8)')
    p.add_argument('--controlnet-weighted-loss', type=float, default=100.0,
                   help="the ControlNet's loss weight on the lesion's latent positions (controlnet.weighted_loss; MAISI's recipe: 100; 1: none)")
    p.add_argument('--segmenter-steps', type=int, default=2400, help='steps of the segmenter that judges the ControlNet (batch 4)')
    p.add_argument('--samples', type=int, default=8, help='generated volumes per Dice figure')
    p.add_argument('--quality-samples', type=int, default=32, help='generated volumes per modality for Fréchet distance and diversity')
    p.add_argument('--tstr-steps', type=int, default=300, help='train-on-synthetic: steps of each segmenter arm (batch 2)')
    p.add_argument('--tstr-test', type=int, default=8, help='train-on-synthetic: held-out real phantoms scored')
    p.add_argument('--device', default=default_device())
    p.add_argument('--markdown'); p.add_argument('--json')
    p.add_argument('--figure', help='PNG: requested masks over real, ControlNet-generated and unconditioned FLAIR (stage 3)')
    a = p.parse_args(argv); dev = a.device
    data = {'source': 'phantoms', 'num_cases': a.num_cases, 'shape': [a.size] * 3, 'roi_size': [a.size] * 3, 'batch_size': 4, 'val_fraction': 0.25}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        vae_path, vae, vae_wall = train_vae(out, data, a.vae_steps, dev, a.vae_recipe)
        psnr, ssim = eval_vae(vae.to(dev), a.size, 4, dev)
        base, paths, info, cfg, diff_steps, diff_wall = train_diffusion(out, vae_path, data, a.diffusion_steps, dev)
        base.attach_vae(load_vae(vae_path))
        # sampling time per volume: same UNet, RF 10 / 30 steps, DDPM 1000 steps
        ddpm = MAISIDiffusionLightning(cfg.model_copy(update={'scheduler': NoiseSchedulerConfig(strategy='ddpm')}).model_dump(), base.latent_shape,
                                       base.latent_channels, base.class_names, base.scale_factor).to(dev).eval()
        ddpm.unet.load_state_dict(base.unet.state_dict())
        lab = [FLAIR]
        t_rf10 = median_time(lambda: base.generate_latents(1, lab, num_inference_steps=10), repeats=5, device=dev)
        t_rf30 = median_time(lambda: base.generate_latents(1, lab, num_inference_steps=30), repeats=5, device=dev)
        t_ddpm = median_time(lambda: ddpm.generate_latents(1, lab, num_inference_steps=1000), repeats=1, warmup=0, device=dev)
        t_dec = median_time(lambda: base.decode(base.generate_latents(1, lab, num_inference_steps=1)), repeats=3, device=dev)
        # ControlNet Dice against the unconditioned model, with a fixed segmenter
        cn, cn_steps, cn_wall = train_controlnet(out, base, paths, info, cfg, a.controlnet_steps, dev, a.controlnet_weighted_loss)
        cn.attach_vae(load_vae(vae_path))
        seg_net = train_segmenter(a.size, 24, a.segmenter_steps, dev, vae=vae)
        masks, real = [], []
        for i in range(a.samples):
            ph = make_phantom((a.size,) * 3, 910_000 + i); masks.append(ph['seg']); real.append(ph['FLAIR'])
        seg = torch.from_numpy(np.stack(masks))[:, None].long().to(dev)
        real = torch.from_numpy(np.stack(real))[:, None].float().to(dev)
        tumour = (seg > 0).long()
        labels = [FLAIR] * a.samples
        gen_cn = cn.decode(cn.generate_latents(a.samples, labels, seed=0, control=mask_condition(seg, [1, 2, 3]).to(dev)))
        gen_base = base.decode(base.generate_latents(a.samples, labels, seed=0))
        with torch.no_grad(): real_rec = vae(real)[0].clamp(0, 1)
        d_cn, d_base, d_real, d_rec = (dice(seg_net, v, tumour) for v in (gen_cn, gen_base, real, real_rec))
        gain, gain_se = paired_gain(d_cn, d_base)
        if a.figure: controlnet_figure(a.figure, seg, real, gen_cn, gen_base, d_cn, d_base)
        tstr_rows = [tstr_row('MAISI ControlNet (FLAIR for a requested mask)', TensorPairs(gen_cn.clamp(0, 1).cpu(), tumour.cpu()),
                              phantom_pairs(a.size, range(920_000, 920_000 + a.samples)), phantom_pairs(a.size, range(930_000, 930_000 + a.tstr_test)),
                              a.tstr_steps, dev)]
        # generation quality per modality: Fréchet distance (fixed features) and diversity, as in the MaskGiT stage-2 benchmark
        quality, n = [], a.quality_samples
        ref, ref_b = real_volumes(a.size, range(700_000, 700_000 + n)), real_volumes(a.size, range(800_000, 800_000 + n))
        for c, mo in enumerate(MODALITIES):
            gen = base.decode(base.generate_latents(n, [c] * n, seed=c, num_inference_steps=10)).cpu()
            with torch.no_grad(): rec = torch.cat([vae(ref[mo][i:i + 8].to(dev))[0].clamp(0, 1).cpu() for i in range(0, n, 8)])
            quality.append(quality_row(mo, gen, ref[mo], ref_b[mo], rec, 'VAE reconstructions'))
            if mo == 'FLAIR': mem_rows = [memorization_row('MAISI, label-conditional FLAIR (rectified flow, 10 steps)', gen, training_phantoms(cfg.data, a.size), ref[mo])]
    m = machine_info(dev)
    rows = [
        {'metric': f'VAE held-out PSNR / SSIM after {a.vae_steps} batches of 4 ({vae_wall:.0f} s)', 'value': f"{psnr:.2f} dB / {ssim:.3f}", 'target': '', 'result': ''},
        {'metric': 'VAE compression', 'value': f"{(a.size ** 3) / (info['latent_channels'] * np.prod(info['grid'])):.0f} voxels per latent value "
                                             f"({tuple(info['grid'])}×{info['latent_channels']})", 'target': '', 'result': ''},
        {'metric': 'diffusion training (batch 8)', 'value': f"{diff_steps} steps ({diff_wall:.0f} s)", 'target': '', 'result': ''},
        {'metric': 'rectified flow, 10 steps (s/volume, latents)', 'value': f"{t_rf10:.3f}", 'target': '', 'result': ''},
        {'metric': 'rectified flow, 30 steps (s/volume, latents)', 'value': f"{t_rf30:.3f}", 'target': '', 'result': ''},
        {'metric': 'DDPM, 1000 steps (s/volume, latents)', 'value': f"{t_ddpm:.2f}", 'target': '', 'result': ''},
        {'metric': 'one flow step + VAE decode (s/volume)', 'value': f"{t_dec:.3f}", 'target': '', 'result': ''},
        {'metric': 'DDPM-1000 / RF-10 time ratio', 'value': f"{t_ddpm / t_rf10:.0f}×", 'target': '≥ 50×', 'result': 'pass' if t_ddpm / t_rf10 >= 50 else 'FAIL'},
        {'metric': 'DDPM-1000 / RF-30 time ratio', 'value': f"{t_ddpm / t_rf30:.0f}×", 'target': '', 'result': ''},
        {'metric': f'ControlNet ({cn_steps} steps, {cn_wall:.0f} s, lesion loss weight {a.controlnet_weighted_loss:g}): Dice(requested mask, lesion in generated FLAIR), mean', 'value': f"{d_cn.mean():.3f}", 'target': '', 'result': ''},
        {'metric': 'unconditioned diffusion: Dice(same masks, lesion in generated FLAIR), mean', 'value': f"{d_base.mean():.3f}", 'target': '', 'result': ''},
        {'metric': f'ControlNet − unconditioned, paired over {a.samples} masks (± standard error)', 'value': f"{gain:+.3f} ± {gain_se:.3f}",
         'target': '> 2 standard errors', 'result': 'pass' if gain > 2 * gain_se else f"FAIL (gain {gain / gain_se:.1f} standard errors)" if gain_se > 0 else 'FAIL'},
        {'metric': f'segmenter ({a.segmenter_steps} steps, real + VAE-reconstructed FLAIR) on real held-out FLAIR', 'value': f"{d_real.mean():.3f}", 'target': '', 'result': ''},
        {'metric': 'the same segmenter on VAE reconstructions of those volumes (ceiling for decoded volumes)', 'value': f"{d_rec.mean():.3f}", 'target': '', 'result': ''},
    ]
    text = (f"### MAISI on phantoms ({a.size}³)\n\n{m['date']}, {m['device']} ({m['cpu_threads']} threads), torch {m['torch']}, MONAI {m['monai']}; "
            f"{a.samples} generated volumes per Dice figure; VAE recipe {a.vae_recipe}.\n\n" + markdown_table(rows) +
            f"\n\n**Generation quality per modality** ({a.quality_samples} label-conditional samples per modality, rectified flow with 10 "
            f"steps, against {a.quality_samples} real held-out volumes; features and distances as in the MaskGiT stage-2 section, "
            f"`bench/common.py`; MS-SSIM lower = more diverse):\n\n" + markdown_table(quality) +
            "\n\n**Train on synthetic, test on real** (`prod9-evaluate tstr`'s computation): one small MONAI UNet trained for the same steps on "
            "the ControlNet's (generated FLAIR, requested mask) pairs, on as many real phantom pairs, and on both; Dice on held-out real FLAIR "
            "(Med-DDPM's ratio for comparison: 0.62 / 0.65 = 95 %):\n\n" + markdown_table(tstr_rows) +
            "\n\n**Memorization** (`prod9-evaluate memorization`'s computation), as in the MaskGiT section:\n\n" + markdown_table(mem_rows))
    print(text)
    if a.markdown: Path(a.markdown).parent.mkdir(parents=True, exist_ok=True); Path(a.markdown).write_text(text + '\n')
    if a.json: Path(a.json).write_text(json.dumps({'machine': m, 'rows': rows, 'quality': quality, 'tstr': tstr_rows, 'memorization': mem_rows}, indent=1))

if __name__ == '__main__': main()
