"""BraTS at full size through every stage of both pipelines, by the command lines and the packaged BraTS configs (issue 19).

A BraTS 2021-layout folder of phantom cases at 240×240×155 (four modalities and a tumour mask with BraTS's labels, 1 mm
RAS) goes through `prod9-train-autoencoder`, `prod9-train-transformer` (label-conditional and in-context),
`prod9-train-maskgit-controlnet`, `prod9-train-maisi-vae`, `-diffusion` and `-controlnet`, each `train` then `generate`,
with the packaged configs (`maskgit/brats/...`, `maisi/autoencoder/brats_vae.yaml`, `maisi/diffusion/brats_*.yaml`)
shrunk through `PROD9_SET` only in width, depth and epochs, never in volume size: stage 1 trains on 64³ patches, the
stage-2 caches encode whole 192×192×144 crops with the 64³ sliding window, the transformer sees 48×48×36 tokens patched
2×2×2, and generation decodes whole 192×192×144 volumes. Each command runs as its own process; the table gives its wall
time and peak resident memory (the kernel's high-water mark of that process, VmHWM); on a GPU the command's peak CUDA memory
is not measured here (see the stage benchmarks).

    python bench/bench_brats_scale.py                        # CPU: ~30 min on 2 cores with 4 cases (4 MaskGiT steps, 5 flow steps)
    python bench/bench_brats_scale.py --device cuda --cases 8 # the packaged configs' sampling steps (16 MaskGiT, 30 flow)
"""
from __future__ import annotations
import argparse, json, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import default_device, machine_info, markdown_table

ROOT = Path(__file__).resolve().parent.parent

def write_brats(root:Path, cases:int, shape) -> Path:
    "BraTS 2021 naming (`BraTS2021_00000/BraTS2021_00000_t1.nii.gz`, ...), label 4 for enhancing tumour, as the real files."
    from prod9.phantoms import make_phantom
    from prod9.io import write_nifti
    from prod9.data import BRATS_SUFFIX
    from prod9.config import MODALITIES
    for i in range(cases):
        case, ph = f'BraTS2021_{i:05d}', make_phantom(shape, i)
        for m in MODALITIES: write_nifti((ph[m] * 1000).astype(np.int16), root / case / f"{case}_{BRATS_SUFFIX['2020'][m]}.nii.gz", ph['affine'])
        seg = ph['seg'].astype(np.uint8); seg[seg == 3] = 4
        write_nifti(seg, root / case / f'{case}_seg.nii.gz', ph['affine'])
    return root

def common_set(device:str) -> str:
    "What every command gets: one epoch of two batches, one validation batch, CSV logs; the device; bf16 on a GPU, fp32 on a CPU."
    prec = 'bf16-mixed' if device == 'cuda' else '32-true'
    return (f"trainer.max_epochs=1; trainer.limit_train_batches=2; trainer.limit_val_batches=1; trainer.limit_test_batches=1; "
            f"trainer.log_every_n_steps=1; trainer.enable_progress_bar=false; trainer.loggers=[csv]; trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}; "
            f"trainer.precision={prec}; data.num_workers=0")

SIZE = {    # width and depth only (volume sizes, windows, token grids and patching are the packaged configs')
    'prod9-train-autoencoder': "model.channels=[8, 16, 16]; model.num_res_blocks=1; model.norm_num_groups=8; loss.adversarial.disc_channels=8",
    'prod9-train-transformer': "model.hidden_dim=32; model.num_layers=2; model.num_heads=2; validation.num_samples=0",
    'prod9-train-maskgit-controlnet': "controlnet.num_layers=1; controlnet.embed_channels=[4, 8]; validation.num_samples=0",
    'prod9-train-maisi-vae': ("model.num_channels=[8, 16, 16]; model.num_res_blocks=[1, 1, 1]; model.attention_levels=[false, false, false]; "
                              "model.norm_num_groups=8; loss.adversarial.disc_channels=8"),
    'prod9-train-maisi-diffusion': ("model.num_channels=[16, 32]; model.num_res_blocks=1; model.attention_levels=[false, false]; "
                                    "model.num_head_channels=[0, 16]; model.norm_num_groups=8"),
    'prod9-train-maisi-controlnet': "",
}

def commands(mask:Path, out:Path, steps:int|None=None, flow_steps:int|None=None) -> list[tuple[str, list[str]]]:
    "The command lines in order; `steps` / `flow_steps` (MaskGiT decoding / rectified-flow steps of `generate`) default to the configs'."
    g = str(out / 'generated')
    mg = ['--steps', str(steps)] if steps else []
    fl = ['--num-inference-steps', str(flow_steps)] if flow_steps else []
    return [
        ('MaskGiT stage 1', ['prod9-train-autoencoder', 'train', '--config', 'maskgit/brats/stage1/base.yaml']),
        ('MaskGiT stage 2 (label)', ['prod9-train-transformer', 'train', '--config', 'maskgit/brats/stage2/base.yaml']),
        ('  generate 2 × T1', ['prod9-train-transformer', 'generate', '--config', 'maskgit/brats/stage2/base.yaml', '--checkpoint',
                               str(out / 'brats_transformer.ckpt'), '--output', f'{g}/maskgit', '--num-samples', '2', '--modality', 'T1', '--batch-size', '2', *mg]),
        ('MaskGiT stage 2 (in-context)', ['prod9-train-transformer', 'train', '--config', 'maskgit/brats/stage2/in_context.yaml']),
        ('  generate T1, T1ce, T2 → FLAIR', ['prod9-train-transformer', 'generate', '--config', 'maskgit/brats/stage2/in_context.yaml', '--checkpoint',
                                             str(out / 'stage2_in_context' / 'last.ckpt'), '--output', f'{g}/in_context', '--num-samples', '1',
                                             '--source-modality', 'T1', 'T1ce', 'T2', '--target-modality', 'FLAIR', *mg]),
        ('MaskGiT stage 3 (ControlNet)', ['prod9-train-maskgit-controlnet', 'train', '--config', 'maskgit/brats/stage3/controlnet.yaml']),
        ('  generate FLAIR for a mask', ['prod9-train-maskgit-controlnet', 'generate', '--config', 'maskgit/brats/stage3/controlnet.yaml', '--checkpoint',
                                         str(out / 'stage3' / 'last.ckpt'), '--output', f'{g}/maskgit_controlnet', '--num-samples', '1',
                                         '--modality', 'FLAIR', '--mask', str(mask), *mg]),
        ('MAISI VAE', ['prod9-train-maisi-vae', 'train', '--config', 'maisi/autoencoder/brats_vae.yaml']),
        ('MAISI diffusion', ['prod9-train-maisi-diffusion', 'train', '--config', 'maisi/diffusion/brats_diffusion.yaml']),
        ('  generate 2 × T1', ['prod9-train-maisi-diffusion', 'generate', '--config', 'maisi/diffusion/brats_diffusion.yaml', '--checkpoint',
                               str(out / 'brats_diffusion.ckpt'), '--output', f'{g}/maisi', '--num-samples', '2', '--modality', 'T1', '--batch-size', '2', *fl]),
        ('MAISI ControlNet', ['prod9-train-maisi-controlnet', 'train', '--config', 'maisi/diffusion/brats_controlnet.yaml']),
        ('  generate FLAIR for a mask', ['prod9-train-maisi-controlnet', 'generate', '--config', 'maisi/diffusion/brats_controlnet.yaml', '--checkpoint',
                                         str(out / 'maisi_controlnet' / 'last.ckpt'), '--output', f'{g}/maisi_controlnet', '--num-samples', '1',
                                         '--modality', 'FLAIR', '--mask', str(mask), *fl]),
    ]

def run(argv, env, log:Path) -> tuple[int, float, float]:
    """Exit status, wall seconds and peak RSS (GiB) of one command: the largest VmHWM (the kernel's high-water mark of the process's
    own memory) read from /proc every 0.1 s while it runs. (`wait4`'s ru_maxrss would not do: Linux carries the forking parent's
    high-water mark across exec, so every child would report at least this script's own ~2 GiB.)"""
    import threading
    t, peak = time.time(), [0]
    with open(log, 'w') as f:
        p = subprocess.Popen(argv, env=env, stdout=f, stderr=subprocess.STDOUT, cwd=env['PROD9_WORK'])
        def poll():
            while p.poll() is None:
                try:
                    for line in open(f'/proc/{p.pid}/status'):
                        if line.startswith('VmHWM:'): peak[0] = max(peak[0], int(line.split()[1]))
                except OSError: pass
                time.sleep(0.1)
        th = threading.Thread(target=poll, daemon=True); th.start()
        p.wait(); th.join()
    return p.returncode, time.time() - t, peak[0] * 1024 / 2 ** 30      # VmHWM: KiB

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--cases', type=int, default=4); p.add_argument('--shape', type=int, nargs=3, default=[240, 240, 155])
    p.add_argument('--device', default=default_device()); p.add_argument('--workdir'); p.add_argument('--keep', action='store_true')
    p.add_argument('--steps', type=int, help="MaskGiT decoding steps of generate (default: 4 on a CPU, the configs' 16 on a GPU)")
    p.add_argument('--flow-steps', type=int, help="rectified-flow steps of generate (default: 5 on a CPU, the configs' 30 on a GPU)")
    p.add_argument('--markdown'); p.add_argument('--json')
    a = p.parse_args(argv)
    if a.device == 'cpu': a.steps, a.flow_steps = a.steps or 4, a.flow_steps or 5
    work = Path(a.workdir or tempfile.mkdtemp(prefix='prod9_brats_scale_')); work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data = write_brats(work / 'BraTS', a.cases, tuple(a.shape))
    t_data = time.time() - t0
    from prod9.io import write_nifti
    from prod9.phantoms import make_phantom
    ph = make_phantom(tuple(a.shape), 1000)
    crop = [slice((s - c) // 2, (s - c) // 2 + c) for s, c in zip(a.shape, (192, 192, 144))]      # the configs' 192×192×144 crop
    seg = ph['seg'][tuple(crop)].astype(np.int16); seg[seg == 3] = 4
    mask = write_nifti(seg, work / 'tumour_mask.nii.gz', ph['affine'])
    out = work / 'outputs'
    env = {**os.environ, 'BRATS_DATA_DIR': str(data), 'PROD9_OUTPUT_DIR': str(out), 'PROD9_WORK': str(work),
           'PYTHONPATH': os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')]))}
    rows = []
    for stage, argv_ in commands(mask, out, a.steps, a.flow_steps):
        env['PROD9_SET'] = f"{common_set(a.device)}; {SIZE[argv_[0]]}"
        log = work / f"log_{len(rows):02d}.txt"
        rc, wall, peak = run(argv_, env, log)
        files = []
        if argv_[1] == 'generate':
            import nibabel as nib
            folder = Path(argv_[argv_.index('--output') + 1])
            files = sorted(folder.glob('sample_*.nii.gz'))
        rows.append({'stage': stage, 'command': f"{argv_[0]} {argv_[1]}", 'wall s': wall, 'peak RSS': f"{peak:.2f} GiB",
                     'output': (f"{len(files)} files, {'×'.join(map(str, nib.load(files[0]).shape))}" if files else ('ok' if rc == 0 else 'FAILED')),
                     'exit': rc})
        print(f"{stage}: exit {rc}, {wall:.0f} s, peak {peak:.2f} GiB", flush=True)
        if rc:
            print(log.read_text()[-3000:]); break
    m = machine_info(a.device)
    total = time.time() - t0
    text = (f"### BraTS-size volumes through every command\n\n{m['date']}, {m['device']} ({m['cpu_threads']} threads), torch {m['torch']}. "
            f"{a.cases} phantom cases at {'×'.join(map(str, a.shape))} in BraTS 2021 layout (written in {t_data:.0f} s), through the packaged "
            f"BraTS configs shrunk in width, depth and epochs only (`PROD9_SET`: one epoch of two batches; widths as in `SIZE` of the script). "
            f"Stage 1 trains on 64³ patches; the caches encode whole 192×192×144 crops (48×48×36 tokens, 2×2×2 patches: 24×24×18 transformer "
            f"positions; MAISI: 4×48×48×36 latents) with the 64³ sliding window; generation decodes whole volumes"
            + (f", in {a.steps} MaskGiT / {a.flow_steps} flow steps (the configs: 16 / 30; fewer steps change sampling time, not memory)" if a.steps or a.flow_steps else '')
            + f". Peak RSS is each process's "
            f"high-water mark (VmHWM, polled every 0.1 s), torch and the libraries included (importing them costs 0.9 GiB). {total / 60:.0f} min in all.\n\n" + markdown_table(rows))
    print(text)
    if a.markdown: Path(a.markdown).parent.mkdir(parents=True, exist_ok=True); Path(a.markdown).write_text(text + '\n')
    if a.json: Path(a.json).write_text(json.dumps({'machine': m, 'rows': rows, 'cases': a.cases, 'shape': a.shape}, indent=1))
    if not a.keep and not a.workdir: shutil.rmtree(work, ignore_errors=True)
    if any(r['exit'] for r in rows): raise SystemExit(1)
    return rows

if __name__ == '__main__': main()
