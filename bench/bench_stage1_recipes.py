"""Stage-1 recipes on the built-in phantoms, both pipelines: which one stops stage 1 being the bottleneck at a CPU budget.

Each recipe trains the stage-1 model (MaskGiT's FSQ autoencoder or MAISI's KL VAE) on the same 48 phantoms at 32³ for a fixed
number of batches (a step budget: two runs train the same models), then reconstructs 32 held-out phantoms per modality. The table
gives, per recipe and modality, the Fréchet distance of the reconstructions to real phantoms in prod9's fixed feature space
(`prod9.metrics.volume_features`) as a multiple of the real ↔ real oracle (a second held-out set against the first), the
held-out PSNR, the blockiness (mean |gradient| across the token-block boundaries over the mean inside blocks; real phantoms
score about 1), the tokens per volume and the wall time. Issue 35's target: FD(reconstructions) ≤ 15× the oracle.

    python bench/bench_stage1_recipes.py                                  # every recipe, ~25 min on 2 CPU cores
    python bench/bench_stage1_recipes.py --only fsq_x4 fsq_x2 --steps 300 # some of them
    python bench/bench_stage1_recipes.py --figure nbs/images/bench/stage1_recipes.png --markdown bench/results/stage1_recipes_cpu.md
"""
from __future__ import annotations
import argparse, json, statistics, sys, tempfile, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import default_device, machine_info, markdown_table, real_volumes, autoencoder_max_steps
from prod9.config import MODALITIES
from prod9.data import PhantomDataModule
from prod9.metrics import volume_features, frechet_distance, blockiness
from prod9.training.engine import fit_stage, budget_trainer_config
from monai.metrics import PSNRMetric

# name → (pipeline, model settings, loss settings, learning rate, block size in voxels = the stage's downsampling factor)
RECIPES = {
    'fsq_x4':        ('maskgit', {'channels': [16, 32, 32], 'levels': [8, 5, 5, 5]}, {}, 1e-3, 4),
    'fsq_x4_codes':  ('maskgit', {'channels': [16, 32, 32], 'levels': [8, 8, 8, 5, 5]}, {}, 1e-3, 4),
    'fsq_x2':        ('maskgit', {'channels': [16, 32], 'levels': [8, 5, 5, 5]}, {}, 1e-3, 2),
    'fsq_x2_wide':   ('maskgit', {'channels': [32, 64], 'levels': [8, 5, 5, 5]}, {}, 1e-3, 2),
    'fsq_patch_x4':  ('maskgit', {'architecture': 'patch', 'channels': [64], 'patch_size': 4, 'levels': [8, 8, 8, 5, 5]}, {}, 1e-3, 4),
    'fsq_patch_x2':  ('maskgit', {'architecture': 'patch', 'channels': [32], 'patch_size': 2, 'levels': [8, 8, 8, 5, 5]}, {}, 1e-3, 2),
    'fsq_patch_x4_refine': ('maskgit', {'architecture': 'patch', 'channels': [64], 'patch_size': 4, 'levels': [8, 8, 8, 5, 5], 'refine_channels': 16}, {}, 1e-3, 4),
    'fsq_patch_x2_refine': ('maskgit', {'architecture': 'patch', 'channels': [32], 'patch_size': 2, 'levels': [8, 8, 8, 5, 5], 'refine_channels': 16}, {}, 1e-3, 2),
    'fsq_patch_x2_refine_1k': ('maskgit', {'architecture': 'patch', 'channels': [32], 'patch_size': 2, 'levels': [8, 5, 5, 5], 'refine_channels': 16}, {}, 1e-3, 2),
    'vae_x4':        ('maisi', {'num_channels': [16, 32, 32], 'num_res_blocks': [1, 1, 1], 'attention_levels': [False] * 3,
                                'norm_num_groups': 8}, {'kl_weight': 1e-6}, 1e-3, 4),
    'vae_x4_wide':   ('maisi', {'num_channels': [16, 32, 32], 'num_res_blocks': [1, 1, 1], 'attention_levels': [False] * 3,
                                'norm_num_groups': 8, 'latent_channels': 8}, {'kl_weight': 1e-6}, 1e-3, 4),
    'vae_x2':        ('maisi', {'num_channels': [16, 32], 'num_res_blocks': [1, 1], 'attention_levels': [False] * 2,
                                'norm_num_groups': 8}, {'kl_weight': 1e-6}, 1e-3, 2),
    # prod9's patch KL VAE (MAISIVAE(architecture='patch')): the patch codec's layers, continuous latents with σ
    'vae_patch_x2_refine':     ('maisi', {'architecture': 'patch', 'num_channels': [32], 'num_res_blocks': 1, 'norm_num_groups': 8, 'patch_size': 2,
                                          'refine_channels': 16}, {'kl_weight': 1e-6}, 1e-3, 2),
    'vae_patch_x2_refine_kl7': ('maisi', {'architecture': 'patch', 'num_channels': [32], 'num_res_blocks': 1, 'norm_num_groups': 8, 'patch_size': 2,
                                          'refine_channels': 16}, {'kl_weight': 1e-7}, 1e-3, 2),
    'vae_patch_x2_refine_kl8': ('maisi', {'architecture': 'patch', 'num_channels': [32], 'num_res_blocks': 1, 'norm_num_groups': 8, 'patch_size': 2,
                                          'refine_channels': 16}, {'kl_weight': 1e-8}, 1e-3, 2),
    'vae_patch_x4_refine_8ch_kl7': ('maisi', {'architecture': 'patch', 'num_channels': [64], 'num_res_blocks': 1, 'norm_num_groups': 8, 'patch_size': 4,
                                              'refine_channels': 16, 'latent_channels': 8}, {'kl_weight': 1e-7}, 1e-3, 4),
    'vae_patch_x2_refine_adv': ('maisi', {'architecture': 'patch', 'num_channels': [32], 'num_res_blocks': 1, 'norm_num_groups': 8, 'patch_size': 2,
                                          'refine_channels': 16}, {'kl_weight': 1e-7, 'adversarial': {'weight': 0.1, 'warmup_steps': 200}}, 1e-3, 2),
    'fsq_patch_x2_refine_1k_adv': ('maskgit', {'architecture': 'patch', 'channels': [32], 'patch_size': 2, 'levels': [8, 5, 5, 5], 'refine_channels': 16},
                                   {'adversarial': {'weight': 0.1, 'warmup_steps': 200}}, 1e-3, 2),
    'vae_patch_x4_refine_8ch': ('maisi', {'architecture': 'patch', 'num_channels': [64], 'num_res_blocks': 1, 'norm_num_groups': 8, 'patch_size': 4,
                                          'refine_channels': 16, 'latent_channels': 8}, {'kl_weight': 1e-6}, 1e-3, 4),
}

def data_block(size, n_cases):
    return {'source': 'phantoms', 'num_cases': n_cases, 'shape': [size] * 3, 'roi_size': [size] * 3, 'batch_size': 4, 'val_fraction': 0.25}

def train(recipe, out, size, n_cases, steps, device, seed=0):
    "Trains one recipe for `steps` batches; returns the stage-1 network (eval mode) and the wall time."
    pipeline, model, loss, lr, _ = RECIPES[recipe]
    trainer = budget_trainer_config('gpu' if str(device).startswith('cuda') else 'cpu')
    if pipeline == 'maskgit':
        from prod9.training.autoencoder_fsq import AutoencoderStageConfig as C, AutoencoderFSQLightning as L
    else:
        from prod9.training.maisi_vae import MAISIVAEStageConfig as C, MAISIVAELightning as L
    cfg = C(output_dir=str(out / recipe), seed=seed, data=data_block(size, n_cases), model=model, loss=loss, training={'lr': lr}, trainer=trainer)
    torch.manual_seed(seed); m = L(cfg)
    t0 = time.perf_counter()
    adv = cfg.loss.adversarial
    fit_stage(m, cfg, datamodule=PhantomDataModule(cfg.data), monitor='val_l1', enable_model_summary=False,
              max_steps=autoencoder_max_steps(steps, adv.weight, adv.warmup_steps))
    assert int(m.batch_step) == steps, f"{recipe} trained {int(m.batch_step)} batches, asked for {steps}"
    return m.autoencoder.eval().to(device), time.perf_counter() - t0

@torch.no_grad()
def reconstruct(net, vols, device, batch=8):
    return torch.cat([net(vols[i:i + batch].to(device))[0].clamp(0, 1).cpu() for i in range(0, len(vols), batch)])

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--only', nargs='+', choices=list(RECIPES), help='recipes to run (default: all)')
    p.add_argument('--steps', type=int, default=600, help='training batches (batch 4) per recipe')
    p.add_argument('--size', type=int, default=32); p.add_argument('--num-cases', type=int, default=48)
    p.add_argument('--seed', type=int, default=0, help='initialisation and data order (another seed: the run-to-run spread)')
    p.add_argument('--samples', type=int, default=32, help='held-out phantoms per modality')
    p.add_argument('--device', default=default_device()); p.add_argument('--markdown'); p.add_argument('--json')
    p.add_argument('--figure', help='PNG: a held-out T1 and FLAIR slice beside each recipe\'s reconstruction')
    a = p.parse_args(argv)
    real = real_volumes(a.size, range(700_000, 700_000 + a.samples))
    real_b = real_volumes(a.size, range(800_000, 800_000 + a.samples))
    feats = {m: volume_features(real[m]) for m in MODALITIES}
    oracle = {m: frechet_distance(volume_features(real_b[m]), feats[m]) for m in MODALITIES}
    rows, recons = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.only or list(RECIPES):
            net, wall = train(name, Path(tmp), a.size, a.num_cases, a.steps, a.device, a.seed)
            b = RECIPES[name][4]
            row = {'recipe': name, 'pipeline': RECIPES[name][0], 'tokens per volume': (a.size // b) ** 3}
            psnrs = []
            for m in MODALITIES:
                rec = reconstruct(net, real[m], a.device)
                recons[(name, m)] = rec
                row[f'FD/oracle {m}'] = round(frechet_distance(volume_features(rec), feats[m]) / oracle[m], 1)
                psnrs += PSNRMetric(1.0)(rec, real[m]).flatten().tolist()
            row['PSNR (dB)'] = round(statistics.median(psnrs), 2)
            row['blockiness'] = round(blockiness(recons[(name, 'T1')], b), 2)
            row['real blockiness'] = round(blockiness(real['T1'], b), 2)
            row['train s'] = round(wall, 1)
            rows.append(row); print(markdown_table([row]), flush=True)
    table = markdown_table(rows)
    head = (f"Stage-1 recipes on phantoms at {a.size}³, {a.steps} batches of 4 each, seed {a.seed}; oracle FD per modality: "
            + ', '.join(f"{m} {oracle[m]:.4f}" for m in MODALITIES))
    print('\n' + head + '\n\n' + table)
    if a.markdown: Path(a.markdown).write_text(f"# {head}\n\n{json.dumps(machine_info(a.device))}\n\n{table}\n")
    if a.json: Path(a.json).write_text(json.dumps({'args': vars(a), 'oracle': oracle, 'rows': rows}, indent=1))
    if a.figure:
        import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
        names = [r['recipe'] for r in rows]; z = a.size // 2
        fig, axs = plt.subplots(2, len(names) + 1, figsize=(1.8 * (len(names) + 1), 3.8))
        for r, m in enumerate(('T1', 'FLAIR')):
            axs[r, 0].imshow(real[m][0, 0, :, :, z].T, cmap='gray', origin='lower', vmin=0, vmax=1); axs[r, 0].set_title(f'real {m}', fontsize=8)
            for c, n in enumerate(names, 1):
                axs[r, c].imshow(recons[(n, m)][0, 0, :, :, z].T, cmap='gray', origin='lower', vmin=0, vmax=1); axs[r, c].set_title(n, fontsize=8)
        for ax in axs.flat: ax.set_xticks([]); ax.set_yticks([])
        fig.tight_layout(); Path(a.figure).parent.mkdir(parents=True, exist_ok=True); fig.savefig(a.figure, dpi=80); plt.close(fig)
    return rows

if __name__ == '__main__':
    main()
