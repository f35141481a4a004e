"""The packaged phantom chains of both pipelines, run through the CLI exactly as a user runs them, and what they make.

For each pipeline (`--pipelines`, default both) this trains the packaged phantom configs with their defaults (MaskGiT:
`maskgit/phantoms/stage1/base.yaml`, `maskgit/phantoms/stage2/base.yaml`; MAISI: `maisi/phantoms/vae.yaml`,
`maisi/phantoms/diffusion.yaml`), each through its command (`prod9-train-autoencoder train`, ...), then generates `--samples` volumes
of every modality with the `generate` command and reads the NIfTI files back. Per pipeline and modality it reports, against held-out
real phantoms: the Fréchet distance (prod9's fixed features, `prod9.metrics.volume_features`) of the stage-1 reconstructions and of the
generated volumes as multiples of the real ↔ real oracle, and the mean pairwise MS-SSIM of generated and of real volumes (diversity);
with the wall time of each command, the budget the figures were bought with. Issue 35's targets: reconstructions ≤ 15× the oracle,
generated ≤ 20×, diversity within 0.03 of the real volumes'. The label-conditional check names the real modality whose intensity
histogram is closest to the generated volumes' (it should be the one asked for), and on FLAIR the share of generated volumes with a
lesion one can see (`prod9.demo.lesion_share`; every real phantom has one). `--figure` puts real and generated slices side by side.

    python bench/bench_chains.py                                   # both pipelines, ~25 min on 2 CPU cores
    python bench/bench_chains.py --pipelines maisi --samples 16 --markdown bench/results/chains_cpu.md --figure bench/results/chains_cpu.png
    MAX_EPOCHS=2 python bench/bench_chains.py --samples 4          # a smoke run (the configs read MAX_EPOCHS)
"""
from __future__ import annotations
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, markdown_table, real_volumes
from prod9.config import MODALITIES
from prod9.metrics import volume_features, frechet_distance, mean_pairwise_msssim, histogram_w1
from prod9.demo import lesion_share
from prod9.training.autoencoder_fsq import load_autoencoder
from prod9.training.maisi_vae import load_vae
from bench_stage1_recipes import reconstruct

CHAINS = {   # pipeline → (train commands, generate command, stage-1 export, checkpoint that generates, stage-1 loader)
    'maskgit': ([('prod9-train-autoencoder', 'maskgit/phantoms/stage1/base.yaml'), ('prod9-train-transformer', 'maskgit/phantoms/stage2/base.yaml')],
                ('prod9-train-transformer', 'maskgit/phantoms/stage2/base.yaml'), 'phantoms_autoencoder.safetensors',
                'maskgit_phantoms_stage2/best.ckpt', load_autoencoder),
    'maisi': ([('prod9-train-maisi-vae', 'maisi/phantoms/vae.yaml'), ('prod9-train-maisi-diffusion', 'maisi/phantoms/diffusion.yaml')],
              ('prod9-train-maisi-diffusion', 'maisi/phantoms/diffusion.yaml'), 'phantoms_vae.safetensors',
              'maisi_phantoms_diffusion/best.ckpt', load_vae),
}

def run(cmd, env, log):
    "One CLI command; its wall time. Its output goes to `log`; a failure stops the benchmark with the command and the log's tail."
    t0 = time.perf_counter()
    with open(log, 'a') as f:
        f.write(f"\n$ {' '.join(map(str, cmd))}\n"); f.flush()
        r = subprocess.run([str(c) for c in cmd], env=env, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed (exit {r.returncode}); the end of {log}:\n" + ''.join(open(log).readlines()[-20:]))
    return time.perf_counter() - t0

def read_volumes(folder:Path, modality:str) -> torch.Tensor:
    "The generated volumes of `modality` in `folder` as `(N, 1, *S)` in [0, 1]."
    import nibabel as nib
    files = sorted(folder.glob(f'*{modality}.nii.gz'))
    if not files: raise SystemExit(f"no generated {modality} volumes (*{modality}.nii.gz) in {folder}")
    return torch.stack([torch.from_numpy(np.asarray(nib.load(str(f)).dataobj, np.float32)).clamp(0, 1) for f in files])[:, None]

def closest_histogram(gen, real) -> str:
    "The label-conditional check: the real modality whose intensity histogram is closest (1-D Wasserstein) to the generated volumes'."
    w1 = {r: histogram_w1(gen, real[r]) for r in real}
    return min(w1, key=w1.get)

def chain(pipeline, out:Path, n:int, real, feats, oracle, log):
    trains, (gen_cmd, gen_cfg), export, ckpt, loader = CHAINS[pipeline]
    env = {**os.environ, 'PROD9_OUTPUT_DIR': str(out)}
    walls = {cmd: run([cmd, 'train', '--config', cfg], env, log) for cmd, cfg in trains}
    gen, t0 = {}, time.perf_counter()
    for m in MODALITIES:
        run([gen_cmd, 'generate', '--config', gen_cfg, '--checkpoint', out / ckpt, '--modality', m, '--num-samples', n,
             '--output', out / 'generated' / m, '--seed', MODALITIES.index(m)], env, log)
        gen[m] = read_volumes(out / 'generated' / m, m)
    gen_wall = time.perf_counter() - t0
    net = loader(out / export).eval()
    rows = []
    for m in MODALITIES:
        rec = reconstruct(net, real[m], 'cpu')
        rows.append({'pipeline': pipeline, 'modality': m,
                     'FD/oracle reconstructions': round(frechet_distance(volume_features(rec), feats[m]) / oracle[m], 1),
                     'FD/oracle generated': round(frechet_distance(volume_features(gen[m]), feats[m]) / oracle[m], 1),
                     'MS-SSIM generated': round(mean_pairwise_msssim(gen[m]), 3), 'MS-SSIM real': round(mean_pairwise_msssim(real[m]), 3),
                     'closest real histogram': closest_histogram(gen[m], real), 'visible lesion, generated': lesion_share(gen[m], m)})
    budget = {**{f"{c} train s": round(w) for c, w in walls.items()}, 'generate s (all modalities)': round(gen_wall)}
    return rows, budget, gen

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--pipelines', nargs='+', choices=list(CHAINS), default=list(CHAINS))
    p.add_argument('--samples', type=int, default=32, help='generated and held-out real volumes per modality')
    p.add_argument('--output-dir', help='keep the runs here (default: a temporary folder)')
    p.add_argument('--device', default='cpu', help="recorded with the results; the commands pick their device as a user's run does (CUDA when present)")
    p.add_argument('--markdown'); p.add_argument('--json')
    p.add_argument('--figure', help='PNG: real and generated axial slices of every modality, per pipeline')
    a = p.parse_args(argv)
    size = 32                                          # the packaged phantom configs' volume size
    real, real_b = real_volumes(size, range(700_000, 700_000 + a.samples)), real_volumes(size, range(800_000, 800_000 + a.samples))
    feats = {m: volume_features(real[m]) for m in MODALITIES}
    oracle = {m: frechet_distance(volume_features(real_b[m]), feats[m]) for m in MODALITIES}
    rows, budgets, gens = [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(a.output_dir or tmp)
        for pl in a.pipelines:
            out = base / pl; out.mkdir(parents=True, exist_ok=True)
            r, budgets[pl], gens[pl] = chain(pl, out, a.samples, real, feats, oracle, base / f'{pl}.log')
            rows += r; print(markdown_table(r), '\n', budgets[pl], flush=True)
    head = (f"The packaged phantom chains through the CLI with their defaults ({size}³; {a.samples} generated and {a.samples} held-out real "
            f"volumes per modality); oracle FD: " + ', '.join(f"{m} {oracle[m]:.4f}" for m in MODALITIES))
    budget_table = markdown_table([{'pipeline': pl, **b, 'total min': round(sum(b.values()) / 60, 1)} for pl, b in budgets.items()])
    text = f"{head}\n\n{markdown_table(rows)}\n\nWall time of each command (the budget):\n\n{budget_table}\n"
    print('\n' + text)
    m = machine_info(a.device)
    if a.markdown: Path(a.markdown).write_text(f"# {head}\n\n{json.dumps(m)}\n\n{markdown_table(rows)}\n\n{budget_table}\n")
    if a.json: Path(a.json).write_text(json.dumps({'args': vars(a), 'machine': m, 'oracle': oracle, 'rows': rows, 'budgets': budgets}, indent=1))
    if a.figure:
        import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
        r_ = ['real'] + list(gens); z = size // 2
        fig, axs = plt.subplots(len(r_), 2 * len(MODALITIES), figsize=(1.5 * 2 * len(MODALITIES), 1.6 * len(r_)))
        for i, name in enumerate(r_):
            for j, mo in enumerate(MODALITIES):
                for k in range(2):
                    v = (real if name == 'real' else gens[name])[mo][k, 0, :, :, z]
                    ax = axs[i, 2 * j + k]; ax.imshow(v.T, cmap='gray', origin='lower', vmin=0, vmax=1); ax.set_xticks([]); ax.set_yticks([])
                    if k == 0: ax.set_title(f"{name} {mo}", fontsize=8)
        fig.tight_layout(); Path(a.figure).parent.mkdir(parents=True, exist_ok=True); fig.savefig(a.figure, dpi=80); plt.close(fig)
    return rows

if __name__ == '__main__':
    main()
