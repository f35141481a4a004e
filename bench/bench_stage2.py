"""MaskGiT stage 2 benchmark on phantoms after fixed CPU budgets.

1. Trains a stage-1 FSQ autoencoder, encodes the phantoms, trains a label-conditional transformer and an in-context one,
   each for a fixed number of optimiser steps (a step budget, not a time budget, so two runs on a noisy machine train the
   same models; the wall time of each is reported).
2. Label-conditional: for each modality, generates volumes and measures the intensity-histogram distance (1-D Wasserstein,
   `prod9.metrics.histogram_w1`) to real held-out volumes of every modality. Pass when each modality's samples are
   closest to the real volumes of the same modality.
3. In-context T1 → T2 on held-out cases: PSNR/SSIM of the translation against the true T2, against copying the T1 source
   (and against the stage-1 reconstruction of the true T2, the ceiling).
4. Sampling time per volume against the number of MaskGiT steps (median of repeats).
5. Stage 3, the MaskGiT ControlNet on the label-conditional transformer: held-out cross-entropy with the mask, without it
   (the frozen transformer) and with the mask mirrored; and Dice between requested tumour masks and the lesion a fixed
   segmenter finds in the generated FLAIR, against the frozen transformer on the same masks and seeds (pass: the paired
   gain exceeds two standard errors). Segmenter and test as in the MAISI benchmark (`common.train_segmenter`), trained on
   real FLAIR and its stage-1 reconstructions.

    python bench/bench_stage2.py                         # ~11 min on 2 CPU cores
    python bench/bench_stage2.py --ae-steps 3000 --tf-steps 2000 --ic-steps 1000 --markdown docs/bench_stage2.md
"""
from __future__ import annotations
import argparse, json, sys, tempfile, time
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stage1_recipes import RECIPES
from common import (autoencoder_max_steps, default_device, machine_info, markdown_table, median_time, real_volumes, quality_row, train_segmenter, dice, paired_gain,
                    training_phantoms, phantom_pairs, tstr_row, memorization_row, controlnet_figure)
from prod9.evaluation import TensorPairs

from prod9.config import MODALITIES
from prod9.phantoms import make_phantom
from prod9.data import PhantomDataModule
from prod9.training.autoencoder_fsq import AutoencoderStageConfig, AutoencoderFSQLightning, export_autoencoder
from prod9.training.engine import fit_stage, budget_trainer_config
from prod9.training.cache import pre_encode, TokenDataModule, TokenDataset, load_tokens
from prod9.training.transformer import TransformerStageConfig, MaskGiTLightning
from prod9.metrics import histogram_w1
from prod9.training.maskgit_controlnet import MaskGiTControlNetStageConfig, MaskGiTControlNetLightning, ControlTokenDataset
from prod9.data import mask_condition
from monai.metrics import PSNRMetric, SSIMMetric
from torch.utils.data import DataLoader

def accel(device): return 'gpu' if str(device).startswith('cuda') else 'cpu'
def quiet(device): return budget_trainer_config(accel(device))

def train_autoencoder(out, size, n_cases, steps, device, adv_weight=0.0, adv_warmup=0, channels=(16, 32, 32), recipe=None):
    "Stage 1: the conv FSQ codec of `channels` (with an adversarial term of `adv_weight`), or a MaskGiT recipe of `bench_stage1_recipes.RECIPES`."
    model, loss, lr = {'channels': list(channels), 'levels': [8, 5, 5, 5]}, {'adversarial': {'weight': adv_weight, 'warmup_steps': adv_warmup}}, 1e-3
    if recipe is not None:
        pipeline, model, loss, lr, _ = RECIPES[recipe]
        if pipeline != 'maskgit': raise SystemExit(f"--ae-recipe {recipe} is a {pipeline} recipe; choose one of {[k for k, v in RECIPES.items() if v[0] == 'maskgit']}")
    cfg = AutoencoderStageConfig(output_dir=str(out / 'ae'), seed=0, loss=loss,
        data={'source': 'phantoms', 'num_cases': n_cases, 'shape': [size] * 3, 'roi_size': [size] * 3, 'batch_size': 4, 'val_fraction': 0.25},
        model=model, training={'lr': lr}, trainer=quiet(device))
    torch.manual_seed(0)
    m = AutoencoderFSQLightning(cfg)
    t0 = time.perf_counter()
    adv = cfg.loss.adversarial
    fit_stage(m, cfg, datamodule=PhantomDataModule(cfg.data), monitor='val_l1', enable_model_summary=False,
              max_steps=autoencoder_max_steps(steps, adv.weight, adv.warmup_steps))
    assert int(m.batch_step) == steps, f"autoencoder trained {int(m.batch_step)} batches, asked for {steps}"
    return export_autoencoder(m.autoencoder, cfg.model, out / 'ae.safetensors'), cfg, time.perf_counter() - t0

def train_transformer(out, ae_path, ae_cfg, kind, steps, device, hidden, layers, patch_size=1):
    cfg = TransformerStageConfig(autoencoder_path=str(ae_path), output_dir=str(out / kind), token_cache_dir=str(out / 'tokens'), seed=0,
        data=ae_cfg.data.model_dump(), model={'transformer_type': kind, 'hidden_dim': hidden, 'num_layers': layers, 'num_heads': 4, 'max_context_length': 3,
                                                  'patch_size': patch_size},
        training={'lr': 1e-3, 'warmup_steps': 20},
        in_context={'source_modalities': ['T1'], 'target_modalities': ['T2']} if kind == 'single_stream' else {}, sliding_window={'roi_size': list(ae_cfg.data.roi_size), 'overlap': 0.25},
        trainer=quiet(device))
    paths = pre_encode(ae_path, cfg.data, cfg.sliding_window, cfg.cache_dir, device=device, log=lambda *_: None, store_masks=True)
    info = load_tokens(paths['train'])
    torch.manual_seed(0)
    m = MaskGiTLightning.from_cache(cfg, info)
    ic = kind == 'single_stream'      # the in-context model is trained for the measured direction, T1 → T2
    t0 = time.perf_counter()
    tr = fit_stage(m, cfg, datamodule=TokenDataModule(paths, 8, 'in_context' if ic else 'label', [0] if ic else None, [2] if ic else None),
                   monitor='val_ce', enable_model_summary=False, max_steps=steps)
    wall = time.perf_counter() - t0
    from prod9.training.autoencoder_fsq import load_autoencoder
    return m.eval().to(device).attach_autoencoder(load_autoencoder(ae_path).to(device)), paths, tr.global_step, wall

def train_controlnet(out, lab, paths, steps, device, layers):
    "Stage 3 on the label-conditional run `lab`: a ControlNet copying its first `layers` blocks, `steps` steps of batch 8; its held-out CE diagnostics."
    info = load_tokens(paths['train'])
    cfg = MaskGiTControlNetStageConfig(**{**lab.cfg.model_dump(), 'output_dir': str(out / 'controlnet'), 'transformer_path': 'in-memory',
                                         'controlnet': {'num_layers': layers}, 'training': {'lr': 1e-3, 'warmup_steps': 20}})
    torch.manual_seed(0)
    m = MaskGiTControlNetLightning.from_cache(cfg, info).init_from_base(lab.transformer.state_dict())
    t0 = time.perf_counter()
    tr = fit_stage(m, cfg, train=DataLoader(ControlTokenDataset(paths['train'], cfg.controlnet.mask_classes), batch_size=8, shuffle=True),
                   monitor='val_ce', enable_model_summary=False, max_steps=steps)
    wall = time.perf_counter() - t0
    ce = tr.validate(m, DataLoader(ControlTokenDataset(paths['val'], cfg.controlnet.mask_classes), batch_size=8), verbose=False)[0]
    return m.eval().to(device).attach_autoencoder(lab.autoencoder), tr.global_step, wall, ce

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--size', type=int, default=32); p.add_argument('--num-cases', type=int, default=48)
    p.add_argument('--ae-steps', type=int, default=600, help='autoencoder training batches (batch 4)')
    p.add_argument('--tf-steps', type=int, default=500, help='label-conditional transformer steps (batch 8)')
    p.add_argument('--ic-steps', type=int, default=200, help='in-context transformer steps (batch 8)')
    p.add_argument('--adv-weight', type=float, default=0.0, help='adversarial loss weight of the autoencoder (0: L1 only)')
    p.add_argument('--adv-warmup', type=int, default=0, help='autoencoder batches before the adversarial loss starts')
    p.add_argument('--ae-channels', type=int, nargs='+', default=[16, 32, 32],
                   help='autoencoder widths per level; n levels downsample 2^(n-1)× per axis (16 32: 2×, 16³ tokens per 32³ volume)')
    p.add_argument('--ae-recipe', choices=[k for k, v in RECIPES.items() if v[0] == 'maskgit'],
                   help='stage 1 from bench_stage1_recipes.RECIPES instead of the conv codec of --ae-channels (fsq_patch_x2_refine_1k: the packaged phantom recipe)')
    p.add_argument('--hidden-dim', type=int, default=128); p.add_argument('--num-layers', type=int, default=4)
    p.add_argument('--patch-size', type=int, default=1, help="transformer tokens per sequence element along each axis (the packaged phantom recipe: 2)")
    p.add_argument('--samples', type=int, default=32); p.add_argument('--steps', type=int, nargs='+', default=[4, 8, 12, 16])
    p.add_argument('--cn-steps', type=int, default=300, help='MaskGiT ControlNet steps (batch 8); 0 skips stage 3')
    p.add_argument('--cn-layers', type=int, default=2, help='transformer blocks the ControlNet copies')
    p.add_argument('--cn-samples', type=int, default=16, help='requested masks per Dice figure')
    p.add_argument('--segmenter-steps', type=int, default=1600, help='steps of the segmenter that judges the ControlNet (batch 4)')
    p.add_argument('--tstr-steps', type=int, default=300, help='train-on-synthetic: steps of each segmenter arm (batch 2)')
    p.add_argument('--tstr-test', type=int, default=8, help='train-on-synthetic: held-out real phantoms scored')
    p.add_argument('--device', default=default_device()); p.add_argument('--markdown'); p.add_argument('--json')
    p.add_argument('--figure', help='PNG: requested masks over real, ControlNet-generated and frozen-transformer FLAIR (stage 3)')
    a = p.parse_args(argv)
    dev = a.device
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        ae_path, ae_cfg, ae_wall = train_autoencoder(out, a.size, a.num_cases, a.ae_steps, dev, a.adv_weight, a.adv_warmup, a.ae_channels, a.ae_recipe)
        lab, paths, lab_steps, lab_wall = train_transformer(out, ae_path, ae_cfg, 'label', a.tf_steps, dev, a.hidden_dim, a.num_layers, a.patch_size)
        ic, _, ic_steps, ic_wall = train_transformer(out, ae_path, ae_cfg, 'single_stream', a.ic_steps, dev, a.hidden_dim, a.num_layers, a.patch_size)
        # 1. histogram distances: generated modality (rows) vs real held-out modality (columns)
        real = real_volumes(a.size, range(700_000, 700_000 + a.samples))
        dist, gens = {}, {}
        for c, m in enumerate(MODALITIES):
            gens[m] = gen = lab.decode(lab.generate_tokens(torch.full((a.samples,), c), seed=c)).cpu()
            dist[m] = {m2: histogram_w1(gen, real[m2]) for m2 in MODALITIES}
        # memorization: each generated FLAIR against the training phantoms, held-out real FLAIR as the reference
        mem_rows = [memorization_row('MaskGiT, label-conditional FLAIR', gens['FLAIR'], training_phantoms(ae_cfg.data, a.size), real['FLAIR'])]
        # oracle: a second real held-out set against the reference set — which modalities the metric can tell apart at all
        real_b = real_volumes(a.size, range(800_000, 800_000 + a.samples))
        oracle = {m: {m2: histogram_w1(real_b[m], real[m2]) for m2 in MODALITIES} for m in MODALITIES}
        # diagnostic: the same distances for stage-1 reconstructions of the real held-out volumes (what stage 2 can at best produce)
        rec_dist, recs = {}, {}
        for m in MODALITIES:
            with torch.no_grad(): recs[m] = lab.autoencoder(real[m].to(dev))[0].clamp(0, 1).cpu()
            rec_dist[m] = {m2: histogram_w1(recs[m], real[m2]) for m2 in MODALITIES}
        # Fréchet distance in a fixed feature space (common.volume_features) and diversity (mean pairwise MS-SSIM)
        quality = [quality_row(m, gens[m], real[m], real_b[m], recs[m], 'stage-1 reconstructions') for m in MODALITIES]
        # stage 2 alone: generated volumes against the stage-1 reconstructions of the real volumes (same blur on both sides)
        gen_rec = {m: {m2: histogram_w1(gens[m], recs[m2]) for m2 in MODALITIES} for m in MODALITIES}
        # 2. in-context T1 -> T2 on held-out (validation) cases, against copying the source
        val = TokenDataset(paths['val'], 'in_context', sources=[0], targets=[2])
        items = [val[i] for i in range(len(val))]
        ctx = {k: torch.stack([it[k] for it in items]) for k in ('context_tokens', 'context_labels', 'context_mask')}
        gen_t2 = ic.decode(ic.generate_tokens(torch.full((len(items),), 2), seed=0, context=ctx)).cpu()
        dm = PhantomDataModule(ae_cfg.data); split = dm.split_cases()['val']
        by_id = {c['case_id']: c for c in split}
        case_ids = load_tokens(paths['val'])['case_ids']
        true_t1, true_t2 = [], []
        for it in items:
            ph = make_phantom((a.size,) * 3, by_id[case_ids[int(it['case_index'])]]['phantom_seed'])
            true_t1.append(torch.from_numpy(ph['T1'])); true_t2.append(torch.from_numpy(ph['T2']))
        true_t1, true_t2 = torch.stack(true_t1)[:, None].float(), torch.stack(true_t2)[:, None].float()
        recon_t2 = ic.decode(torch.stack([it['tokens'] for it in items]).to(dev)).cpu()
        psnr, ssim = PSNRMetric(1.0), SSIMMetric(3, data_range=1.0)
        score = lambda x: (float(psnr(x, true_t2).median()), float(ssim(x, true_t2).median()))
        # the same cases given as NIfTI files, through `generate --input` (read, crop, encode, translate, resample back to the file's grid)
        from prod9.cli.transformer import translate_file
        from prod9.io import write_nifti, read_volume
        from_files = []
        for k, it in enumerate(items):
            ph = make_phantom((a.size,) * 3, by_id[case_ids[int(it['case_index'])]]['phantom_seed'])
            src = write_nifti(ph['T1'], out / 'files' / f'case{k}_t1.nii.gz', ph['affine'])
            args = argparse.Namespace(input=str(src), output=str(out / 'files' / f'case{k}_t2.nii.gz'), source_modality=['T1'],
                                      target_modality='T2', seed=k, steps=None, guidance_scale=None)
            from_files.append(torch.from_numpy(read_volume(translate_file(ic.cfg, ic, args)).data))
        from_files = torch.stack(from_files)[:, None].float()
        tr_scores = {'in-context T1 → T2': score(gen_t2), 'in-context T1 → T2 from NIfTI files (generate --input)': score(from_files),
                     'copy T1 as T2': score(true_t1), 'stage-1 reconstruction of true T2 (ceiling)': score(recon_t2)}
        # 3. sampling time per volume against steps (tokens only, and with decoding)
        timing = []
        for s in a.steps:
            t_tok = median_time(lambda: lab.generate_tokens(torch.zeros(4, dtype=torch.long), seed=0, steps=s), repeats=3, device=dev) / 4
            t_all = median_time(lambda: lab.decode(lab.generate_tokens(torch.zeros(4, dtype=torch.long), seed=0, steps=s)), repeats=3, device=dev) / 4
            timing.append({'steps': s, 'tokens s/volume': t_tok, 'tokens + decode s/volume': t_all})
        # 4. stage 3: the ControlNet's held-out CE, and lesion Dice against the frozen transformer on the same masks and seeds
        cn_rows, tstr_rows = [], []
        if a.cn_steps:
            cn, cn_steps, cn_wall, ce = train_controlnet(out, lab, paths, a.cn_steps, dev, a.cn_layers)
            seg_net = train_segmenter(a.size, 24, a.segmenter_steps, dev, vae=lab.autoencoder)
            masks, flair = [], []
            for i in range(a.cn_samples):
                ph = make_phantom((a.size,) * 3, 910_000 + i); masks.append(ph['seg']); flair.append(ph['FLAIR'])
            seg = torch.from_numpy(np.stack(masks))[:, None].long().to(dev)
            flair = torch.from_numpy(np.stack(flair))[:, None].float().to(dev)
            tumour, labels = (seg > 0).long(), torch.full((a.cn_samples,), MODALITIES.index('FLAIR'))
            gen_cn = lab.decode(cn.generate_tokens(labels, seed=0, control=mask_condition(seg, cn.cfg.controlnet.mask_classes)))
            gen_base = lab.decode(lab.generate_tokens(labels, seed=0))
            with torch.no_grad(): flair_rec = lab.autoencoder(flair)[0].clamp(0, 1)
            d_cn, d_base, d_real, d_rec = (dice(seg_net, v, tumour) for v in (gen_cn, gen_base, flair, flair_rec))
            if a.figure: controlnet_figure(a.figure, seg, flair, gen_cn, gen_base, d_cn, d_base)
            gain, se = paired_gain(d_cn, d_base)
            tstr_rows = [tstr_row('MaskGiT ControlNet (FLAIR for a requested mask)', TensorPairs(gen_cn.clamp(0, 1).cpu(), tumour.cpu()),
                                  phantom_pairs(a.size, range(920_000, 920_000 + a.cn_samples)), phantom_pairs(a.size, range(930_000, 930_000 + a.tstr_test)),
                                  a.tstr_steps, dev)]
            cn_rows = [
                {'metric': f'ControlNet training ({a.cn_layers} of {a.num_layers} blocks copied, batch 8)', 'value': f"{cn_steps} steps ({cn_wall:.0f} s)", 'target': '', 'result': ''},
                {'metric': 'held-out cross-entropy of masked tokens: with the mask / frozen transformer / mask mirrored left–right',
                 'value': f"{ce['val_ce']:.3f} / {ce['val_ce_without_control']:.3f} / {ce['val_ce_mirrored_mask']:.3f}", 'target': 'with the mask lowest',
                 'result': 'pass' if ce['val_ce'] < min(ce['val_ce_without_control'], ce['val_ce_mirrored_mask']) else 'FAIL'},
                {'metric': 'ControlNet: Dice(requested mask, lesion in generated FLAIR), mean', 'value': f"{d_cn.mean():.3f}", 'target': '', 'result': ''},
                {'metric': 'frozen transformer, no mask: Dice(same masks, lesion in generated FLAIR), mean', 'value': f"{d_base.mean():.3f}", 'target': '', 'result': ''},
                {'metric': f'ControlNet − frozen transformer, paired over {a.cn_samples} masks (± standard error)', 'value': f"{gain:+.3f} ± {se:.3f}",
                 'target': '> 2 standard errors', 'result': 'pass' if gain > 2 * se else f"FAIL (gain {gain / se:.1f} standard errors)" if se > 0 else 'FAIL'},
                {'metric': f'segmenter ({a.segmenter_steps} steps, real + stage-1-reconstructed FLAIR) on real held-out FLAIR', 'value': f"{d_real.mean():.3f}", 'target': '', 'result': ''},
                {'metric': 'the same segmenter on stage-1 reconstructions of those volumes (ceiling for decoded volumes)', 'value': f"{d_rec.mean():.3f}", 'target': '', 'result': ''}]
    m = machine_info(dev)
    hist_rows = [{'generated \\ real': g, **{r: f"{v:.4f}{' ◀' if r == min(d, key=d.get) else ''}" for r, v in d.items()},
                  'closest is own modality': 'pass' if min(d, key=d.get) == g else 'FAIL'} for g, d in dist.items()]
    rec_rows = [{'reconstructed \\ real': g, **{r: f"{v:.4f}{' ◀' if r == min(d, key=d.get) else ''}" for r, v in d.items()},
                 'closest is own modality': 'yes' if min(d, key=d.get) == g else 'no'} for g, d in rec_dist.items()]
    oracle_rows = [{'real set B \\ real set A': g, **{r: f"{v:.4f}{' ◀' if r == min(d, key=d.get) else ''}" for r, v in d.items()},
                    'closest is own modality': 'yes' if min(d, key=d.get) == g else 'no',
                    'margin to the next modality': f"{min(v for k, v in d.items() if k != g) - d[g]:+.4f}"} for g, d in oracle.items()]
    gr_rows = [{'generated \\ reconstructed real': g, **{r: f"{v:.4f}{' ◀' if r == min(d, key=d.get) else ''}" for r, v in d.items()},
                'closest is own modality': 'yes' if min(d, key=d.get) == g else 'no'} for g, d in gen_rec.items()]
    tr_rows = [{'method': k, 'PSNR (dB, median)': f"{v[0]:.2f}", 'SSIM (median)': f"{v[1]:.3f}"} for k, v in tr_scores.items()]
    beats = all(tr_scores[k][i] > tr_scores['copy T1 as T2'][i] for k in ('in-context T1 → T2', 'in-context T1 → T2 from NIfTI files (generate --input)') for i in (0, 1))
    text = (f"### MaskGiT stage 2 on phantoms ({a.size}³, token grid {tuple(lab.latent_shape)}, transformer {a.hidden_dim}×{a.num_layers})\n\n"
            f"{m['date']}, {m['device']} ({m['cpu_threads']} threads), torch {m['torch']}, MONAI {m['monai']}. Step budgets: autoencoder "
            f"{a.ae_steps} batches of 4{f' (adversarial weight {a.adv_weight} from batch {a.adv_warmup})' if a.adv_weight else ''}{f', recipe {a.ae_recipe}' if a.ae_recipe else ''} ({ae_wall:.0f} s), "
            f"label-conditional transformer {lab_steps} steps of batch 8{f' ({a.patch_size}³ tokens per element)' if a.patch_size > 1 else ''} ({lab_wall:.0f} s), "
            f"in-context transformer {ic_steps} steps ({ic_wall:.0f} s).\n\n"
            f"**Intensity-histogram distance (W1) of {a.samples} generated volumes per modality to {a.samples} real held-out volumes per modality** "
            f"(◀ = closest):\n\n" + markdown_table(hist_rows) +
            f"\n\nOracle, the same distance between two disjoint sets of {a.samples} *real* held-out volumes: how well the metric "
            f"separates the modalities at all (T1 and T1ce differ only in the enhancing rim, a small fraction of the voxels):\n\n"
            + markdown_table(oracle_rows) +
            "\n\nDiagnostic, the same distances for the stage-1 reconstructions of the real held-out volumes (the best stage 2 can do "
            "through this autoencoder):\n\n" + markdown_table(rec_rows) +
            "\n\nStage 2 alone: the generated volumes against the stage-1 reconstructions of the real held-out volumes (both sides "
            "through the same autoencoder, so its blur cancels):\n\n" + markdown_table(gr_rows) +
            "\n\n**Fréchet distance and diversity.** Features per volume (fixed, no network): 32-bin intensity histogram, 16-bin "
            "gradient-magnitude histogram and 8 radial shell means (`bench/common.py: volume_features`); Fréchet distance of Gaussian fits "
            "as in FID; diversity = mean MS-SSIM over up to 120 pairs of distinct volumes (lower = more diverse):\n\n" + markdown_table(quality) +
            f"\n\n**In-context translation T1 → T2 on {len(items)} held-out cases**, from the token cache and from the cases written as NIfTI files — both beat copying the source on PSNR and SSIM: "
            f"{'pass' if beats else 'FAIL'}\n\n" + markdown_table(tr_rows) +
            "\n\n**Sampling time per volume** (batch 4, median of 3):\n\n" + markdown_table(timing) +
            (f"\n\n**Stage 3: MaskGiT ControlNet** (FLAIR generated for {a.cn_samples} requested tumour masks of held-out phantoms, "
             f"{lab.cfg.sampler.steps} sampling steps, the same seeds with and without the mask):\n\n" + markdown_table(cn_rows) if cn_rows else '') +
            ("\n\n**Train on synthetic, test on real** (`prod9-evaluate tstr`'s computation): one small MONAI UNet trained for the same steps on "
             "the ControlNet's (generated FLAIR, requested mask) pairs, on as many real phantom pairs, and on both; Dice on held-out real FLAIR "
             "(Med-DDPM's ratio for comparison: 0.62 / 0.65 = 95 %):\n\n" + markdown_table(tstr_rows) if tstr_rows else '') +
            "\n\n**Memorization** (`prod9-evaluate memorization`'s computation): each generated FLAIR's highest normalised cross-correlation "
            "with any training phantom (mirror images and shifts up to 1/8 searched), against held-out real phantoms' similarity to the training set; "
            "flagged = at or above the threshold halfway between the held-out maximum and 1:\n\n" + markdown_table(mem_rows))
    print(text)
    if a.markdown: Path(a.markdown).parent.mkdir(parents=True, exist_ok=True); Path(a.markdown).write_text(text + '\n')
    if a.json: Path(a.json).write_text(json.dumps({'machine': m, 'hist': dist, 'hist_oracle': oracle, 'hist_reconstructions': rec_dist, 'hist_generated_vs_reconstructed': gen_rec, 'translation': tr_scores, 'quality': quality, 'timing': timing, 'controlnet': cn_rows, 'tstr': tstr_rows, 'memorization': mem_rows}, indent=1))

if __name__ == '__main__': main()
