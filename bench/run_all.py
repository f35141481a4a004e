"""Run every prod9 benchmark and write the results page of the docs.

    python bench/run_all.py                     # CPU-sized (~30 min on 2 cores); installs the data packages it needs
    python bench/run_all.py --only speed real_mri
    python bench/run_all.py --scale large       # larger budgets and volumes (for a GPU; picked by default when CUDA is present)
    python bench/run_all.py --only speed --update-page   # rerun some and replace only their sections of the page (dated)

Each benchmark writes `bench/results/<name>_<device>.md` (and `.json`); the page `nbs/benchmarks.ipynb` (rendered into
the docs as "Benchmarks") is rebuilt from the results of this run, with the machine, versions, date and the wall time of
every benchmark. Nothing in the page is typed by hand.
"""
from __future__ import annotations
import argparse, importlib, importlib.util, json, os, subprocess, sys, time
from pathlib import Path
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from common import machine_info, default_device

# name: (module, title, CPU-sized arguments, large arguments)
BENCHES = {
    'brats_scale': ('bench_brats_scale', 'BraTS-size volumes through every command', [], ['--cases', '8']),
    'speed': ('bench_speed', 'Training-step speed against the matmul peak', [], ['--size', '64', '--batch', '2', '--patch-grids', '12x12x12', '24x24x18', '48x48x36', '--patch-batch', '2']),
    'stage1': ('bench_stage1', 'MaskGiT stage 1: FSQ autoencoder and sliding-window inference', [], ['--budget-s', '900']),
    'stage2': ('bench_stage2', 'MaskGiT stages 2 and 3: generation, in-context translation, sampling time, ControlNet', [],
               ['--ae-steps', '4000', '--adv-weight', '0.1', '--adv-warmup', '2000', '--tf-steps', '4000', '--ic-steps', '2000', '--samples', '32',
                '--cn-steps', '3000', '--segmenter-steps', '8000']),
    'maisi': ('bench_maisi', 'MAISI: VAE, rectified flow vs DDPM, ControlNet', [],
              ['--vae-steps', '4000', '--diffusion-steps', '20000', '--controlnet-steps', '8000', '--segmenter-steps', '8000']),
    'chains': ('bench_chains', 'The packaged phantom chains through the CLI, as a user runs them', [], []),
    'real_mri': ('bench_real_mri', 'Reconstruction on real MRI', [], ['--scale', 'large']),
    'medgen': ('bench_medgen', "MedGen's modes: bravo and dual against unconditioned models, seg masks", [],
               ['--size', '64', '--steps', '6000', '--channels', '32', '64', '64', '--segmenter-steps', '3000', '--samples', '64']),
}
DEBIAN = ['mricron-data', 'insighttoolkit5-examples']
PYPI = ['nilearn']

def ensure_data_packages(log=print):
    "Install the Debian and PyPI packages the real-MRI benchmark reads (no-op when present)."
    from bench_real_mri import COLIN27, ITK_T1
    if not (COLIN27.exists() and ITK_T1.exists()):
        sudo = [] if os.geteuid() == 0 else ['sudo']
        log(f"installing Debian packages {DEBIAN}")
        subprocess.run(sudo + ['apt-get', 'update', '-qq'], check=True)
        subprocess.run(sudo + ['apt-get', 'install', '-y', '-qq', *DEBIAN], check=True, env={**os.environ, 'DEBIAN_FRONTEND': 'noninteractive'})
    if importlib.util.find_spec('nilearn') is None:
        log(f"installing PyPI packages {PYPI}")
        subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', *PYPI], check=True)

def generation_summary(res: Path, tag: str) -> str | None:
    "One table: MaskGiT at T steps against rectified flow at 10/30 steps and DDPM at 1000 steps, seconds per 32³ volume (this run)."
    s2, mi = res / f"stage2_{tag}.json", res / f"maisi_{tag}.json"
    if not (s2.exists() and mi.exists()): return None
    from common import markdown_table
    t = json.loads(s2.read_text())['timing']
    rows = {r['metric']: r['value'] for r in json.loads(mi.read_text())['rows']}
    val = lambda k: float(str(rows[k]).split()[0])
    rf10, rf30, ddpm = (val('rectified flow, 10 steps (s/volume, latents)'), val('rectified flow, 30 steps (s/volume, latents)'),
                        val('DDPM, 1000 steps (s/volume, latents)'))
    out = [{'method': f"MaskGiT, {r['steps']} steps", 'generation s/volume': r['tokens s/volume'], 'with decoding s/volume': r['tokens + decode s/volume']} for r in t]
    dec = val('one flow step + VAE decode (s/volume)') - rf10 / 10      # VAE decode time, from the MAISI section's own figures
    out += [{'method': f'MAISI {n}', 'generation s/volume': g, 'with decoding s/volume': g + dec}
            for n, g in (('rectified flow, 10 steps', rf10), ('rectified flow, 30 steps', rf30), ('DDPM, 1000 steps', ddpm))]
    for r in out: r['× faster than DDPM-1000'] = f"{ddpm / r['generation s/volume']:.0f}×"
    return ("## Generation time per volume, both pipelines\n\nFrom the stage-2 and MAISI sections of this run (32³ phantoms; MaskGiT: 8³ "
            "tokens, transformer 128×4; MAISI: 8³×4 latents, the same UNet for all three samplers). Generation = token or latent "
            "sampling; MAISI's decoding time is (one flow step + VAE decode) minus a tenth of the 10-step time, both measured in its section.\n\n" + markdown_table(out))

def write_page(path: Path, machine: dict, sections: list, total_s: float, extra: list = ()):
    import nbformat, hashlib
    intro = (f"# Benchmarks\n\n> Quality, speed and memory of both pipelines, regenerated by `python bench/run_all.py`; every figure on "
             f"this page comes from one run of that command.\n\n"
             f"Run of {machine['date']} on {machine['device']} ({machine['cpu']}, {machine['cpu_threads']} threads"
             f"{', ' + machine['gpu'] if 'gpu' in machine else ''}), Python {machine['python']}, torch {machine['torch']}, "
             f"MONAI {machine['monai']}, Lightning {machine['lightning']}; {total_s / 60:.0f} min in all. "
             f"Benchmarks report, they are not tests: timings are medians, comparisons are ratios measured in the same run, "
             f"and each target says pass or FAIL with the margin.\n\n"
             "| benchmark | script | wall time |\n|---|---|---|\n" +
             '\n'.join(f"| {t} | `bench/{mod}.py` | {s / 60:.1f} min |" for t, mod, s, _ in sections))
    nb = nbformat.v4.new_notebook()
    cells = [intro] + [f"## {t}\n\n" + md.split('\n', 1)[1].lstrip() if md.startswith('### ') else f"## {t}\n\n{md}" for t, _, _, md in sections]
    cells += [c for c in extra if c]
    for i, c in enumerate(cells):         # ids by position, so a regenerated page diffs only where its figures changed
        cell = nbformat.v4.new_markdown_cell(c); cell.id = hashlib.sha1(f'benchmarks-{i}'.encode()).hexdigest()[:8]; nb.cells.append(cell)
    nb.metadata = {'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}}
    nbformat.write(nb, path)

def update_page(path: Path, machine: dict, sections: list):
    "Replace the page's sections of these benchmarks (matched by title; new ones go before the generation summary), saying when they ran."
    import nbformat, hashlib
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source = nb.cells[0].source.replace('every figure on this page comes from one run of that command.',
                                                    'every figure on this page comes from one run of that command, except the sections marked as rerun on their own.')
    for title, mod, secs, md in sections:
        body = md.split('\n', 1)[1].lstrip() if md.startswith('### ') else md
        text = (f"## {title}\n\n*Rerun on its own ({machine['date']}, {machine['device']}, `bench/run_all.py --only … --update-page`, "
                f"{secs / 60:.1f} min); the other sections come from the full run the introduction describes.*\n\n{body}")
        at = [i for i, c in enumerate(nb.cells) if c.source.startswith(f"## {title}\n")]
        if at: nb.cells[at[0]].source = text
        else:
            cell = nbformat.v4.new_markdown_cell(text); cell.id = hashlib.sha1(f'benchmarks-{title}'.encode()).hexdigest()[:8]
            end = [i for i, c in enumerate(nb.cells) if c.source.startswith('## Generation time per volume')]
            nb.cells.insert(end[0] if end else len(nb.cells), cell)
    nbformat.write(nb, path)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--only', nargs='+', choices=list(BENCHES), default=list(BENCHES))
    p.add_argument('--scale', choices=['cpu', 'large'], default='large' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--device', default=default_device())
    p.add_argument('--results', default=str(HERE / 'results')); p.add_argument('--page', default=str(ROOT / 'nbs' / 'benchmarks.ipynb'))
    p.add_argument('--no-install', action='store_true', help='do not install missing data packages')
    p.add_argument('--update-page', action='store_true', help="with --only: replace (or add) just these benchmarks' sections of the page, "
                   "each marked with the date of this run; the other sections keep the run they came from")
    a = p.parse_args(argv)
    if 'real_mri' in a.only and not a.no_install: ensure_data_packages()
    res = Path(a.results); res.mkdir(parents=True, exist_ok=True)
    tag = 'cpu' if a.device == 'cpu' else 'cuda'
    t_all, sections = time.time(), []
    for name in a.only:
        mod, title, cpu_args, large_args = BENCHES[name]
        md, js = res / f"{name}_{tag}.md", res / f"{name}_{tag}.json"
        args = (cpu_args if a.scale == 'cpu' else large_args) + ['--device', a.device, '--markdown', str(md), '--json', str(js)]
        if name == 'real_mri': args += ['--figure', str(ROOT / 'nbs' / 'images' / 'bench' / 'real_mri.png'),
                                        '--curves', str(ROOT / 'nbs' / 'images' / 'bench' / 'real_mri_curves.png')]
        if name == 'stage2': args += ['--figure', str(ROOT / 'nbs' / 'images' / 'bench' / 'maskgit_controlnet.png')]
        if name == 'chains': args += ['--figure', str(ROOT / 'nbs' / 'images' / 'bench' / 'chains.png')]
        print(f"== {name}: python bench/{mod}.py {' '.join(args)}", flush=True)
        t = time.time()
        r = subprocess.run([sys.executable, str(HERE / f"{mod}.py"), *args])
        if r.returncode: raise SystemExit(f"bench/{mod}.py failed with exit status {r.returncode}; the page was not rewritten")
        text = md.read_text()
        if name == 'chains': text += "\n![Real and generated phantoms of every modality, axial slices](images/bench/chains.png)\n"
        if name == 'real_mri': text += ("\n![Middle axial slice of the test volume and each model's reconstruction](images/bench/real_mri.png)\n"
                                        "\n![PSNR inside the head on the held-out T1 and the share of the codebook its tokens use, against training steps; "
                                        "the dashed line is trilinear ×4](images/bench/real_mri_curves.png)\n")
        if name == 'stage2': text += ("\n![Requested tumour masks (red) over real FLAIR, the ControlNet's FLAIR and the frozen transformer's, "
                                      "at the slice with the most tumour; Dice of the segmented lesion per volume](images/bench/maskgit_controlnet.png)\n")
        sections.append((title, mod, time.time() - t, text))
    if set(a.only) == set(BENCHES):
        write_page(Path(a.page), machine_info(a.device), sections, time.time() - t_all, [generation_summary(res, tag)])
        print(f"wrote {a.page}")
    elif a.update_page:
        update_page(Path(a.page), machine_info(a.device), sections)
        print(f"updated the sections {a.only} of {a.page}")
    else:
        print(f"ran {a.only}; the docs page is rewritten only by a full run or with --update-page (results are in {res})")

if __name__ == '__main__': main()
