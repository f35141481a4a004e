"""Training-step speed against the machine's limit: FLOP/s achieved by the autoencoders and the transformer.

For each network, one training step (forward + backward + Adam update) on a fixed batch: median step time, the FLOPs of
forward + backward counted by `torch.utils.flop_counter.FlopCounterMode` (convolutions, matmuls, attention: `common.flop_counter`
adds the CPU flash-attention kernels torch's table misses), the
achieved FLOP/s, and that as a fraction of the fp32 matmul peak measured on the same machine in the same run
(`common.matmul_peak_flops`). A short kernel timing on a shared machine can come out low, which would inflate the
utilisation, so the references (matmuls of 1024², 2048², 4096² and a Conv3d) are measured before, between and after the
networks and the *highest* rate is the peak. Target (issue 7): autoencoder and transformer steps reach at least 50% of the matmul peak.
Also our FSQ autoencoder against MONAI's `AutoencoderKlMaisi` of similar size (step time, peak memory), and token patching
(issue 19): the MaskGiT transformer's FLOPs, step time and peak memory per training step against the token grid, unpatched and
with 2×2×2 tokens per sequence element, with the ratios measured in the same run.

    python bench/bench_speed.py                   # ~3 min on 2 CPU cores
    python bench/bench_speed.py --patch-grids 24x24x18 48x48x36 --patch-batch 4 --device cuda   # BraTS's 48×48×36 (packaged config)
"""
from __future__ import annotations
import argparse, json, sys
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import default_device, machine_info, markdown_table, median_time, matmul_peak_flops, PeakMemory, gib, flop_counter

from prod9.autoencoder.autoencoder_fsq import AutoencoderFSQ
from prod9.autoencoder.autoencoder_maisi import MAISIVAE
from prod9.generator.transformer import TransformerDecoder

def ae_step(model, x):
    def step():
        out = model(x)[0]
        loss = (out - x).abs().mean(); loss.backward()
    return step

def tf_step(model, tokens, labels, vocab):
    def step():
        logits = model(tokens, labels)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1).clamp(max=vocab - 1)); loss.backward()
    return step

def measure(name, model, step, device, repeats):
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    def full():
        opt.zero_grad(set_to_none=True); step(); opt.step()
    with flop_counter() as fc: step()
    flops = fc.get_total_flops()
    with PeakMemory(device) as pm: full()
    t = median_time(full, repeats=repeats, warmup=1, device=device)
    return {'network': name, 'params (M)': sum(p.numel() for p in model.parameters()) / 1e6, 'GFLOP / step (fwd+bwd)': flops / 1e9,
            'step s (median)': t, 'GFLOP/s': flops / t / 1e9, 'peak memory': gib(pm.peak), '_flops_per_s': flops / t}

def patching_rows(grids, batch, device, repeats, hidden=256, layers=4, heads=4, vocab=1000) -> list[dict]:
    "One transformer training step per token grid, with patch_size 1 and 2: FLOPs, median step time, peak memory, and the ratios."
    rows = []
    for grid in grids:
        r = {'token grid': '×'.join(map(str, grid)), 'tokens': int(torch.tensor(grid).prod())}
        for p in (1, 2):
            torch.manual_seed(0)
            tf = TransformerDecoder(vocab_size=vocab, latent_shape=grid, hidden_dim=hidden, num_layers=layers, num_heads=heads, patch_size=p).to(device)
            toks = torch.randint(0, vocab, (batch, *grid), device=device); labels = torch.randint(0, 4, (batch,), device=device)
            m = measure('', tf, tf_step(tf, toks, labels, vocab), device, repeats)
            r[f'p={p}: sequence'] = r['tokens'] // p ** 3
            r[f'p={p}: GFLOP / step'] = m['GFLOP / step (fwd+bwd)']; r[f'p={p}: step s'] = m['step s (median)']; r[f'p={p}: peak'] = m['peak memory']
            del tf
        r['FLOPs ratio p1/p2'] = r['p=1: GFLOP / step'] / r['p=2: GFLOP / step']
        r['time ratio p1/p2'] = r['p=1: step s'] / r['p=2: step s']
        rows.append(r)
    return rows

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--size', type=int, default=32); p.add_argument('--batch', type=int, default=4)
    p.add_argument('--repeats', type=int, default=5); p.add_argument('--device', default=default_device())
    p.add_argument('--patch-grids', nargs='+', default=['8x8x8', '12x12x12', '16x16x16'], help="token grids for the patching table (AxBxC)")
    p.add_argument('--patch-batch', type=int, default=2)
    p.add_argument('--markdown'); p.add_argument('--json')
    a = p.parse_args(argv)
    dev = torch.device(a.device); torch.manual_seed(0)
    # a second reference: on CPUs oneDNN's convolutions can beat torch's (MKL) matmul, so the matmul is not always the limit
    conv = torch.nn.Conv3d(64, 64, 3, padding=1).to(dev); xc = torch.rand(4, 64, 32, 32, 32, device=dev)
    refs = []
    def reference():
        mm = {n: matmul_peak_flops(n, dev, repeats=3) for n in (1024, 2048, 4096)}
        with torch.no_grad(): cv = 2 * 4 * 64 * 32 ** 3 * 64 * 27 / median_time(lambda: conv(xc), 3, warmup=1, device=dev)
        refs.append({'matmul': mm, 'conv3d': cv})
    x = torch.rand(a.batch, 1, a.size, a.size, a.size, device=dev)
    rows = []
    reference()
    fsq = AutoencoderFSQ(3, 1, 1, (32, 64, 64), (8, 5, 5, 5)).to(dev)
    rows.append(measure('FSQ autoencoder (32·64·64, ×4)', fsq, ae_step(fsq, x), dev, a.repeats)); reference()
    vae = MAISIVAE(spatial_dims=3, num_channels=[32, 64, 64], num_res_blocks=[1, 1, 1], attention_levels=[False] * 3, norm_num_groups=8,
                   latent_channels=4).to(dev)
    rows.append(measure('MONAI AutoencoderKlMaisi (32·64·64, ×4)', vae, ae_step(vae, x), dev, a.repeats)); reference()
    grid = (a.size // 4,) * 3
    tf = TransformerDecoder(vocab_size=1000, latent_shape=grid, num_modalities=4, hidden_dim=256, num_layers=4, num_heads=4).to(dev)
    toks = torch.randint(0, 1000, (a.batch, *grid), device=dev); labels = torch.randint(0, 4, (a.batch,), device=dev)
    rows.append(measure(f'MaskGiT transformer (256×4, {grid[0]}³ tokens)', tf, tf_step(tf, toks, labels, 1000), dev, a.repeats)); reference()
    mm_all = [v for r in refs for v in r['matmul'].values()]
    peak, conv_rate = max(mm_all), max(r['conv3d'] for r in refs)
    best = max(peak, conv_rate)
    for r in rows:
        frac = r.pop('_flops_per_s') / peak
        r['% of matmul peak'] = f"{100 * frac:.0f}%"
        r['% of best measured kernel'] = f"{100 * frac * peak / best:.0f}%"
        r['target ≥ 50%'] = 'pass' if frac >= 0.5 else f"FAIL (short by {50 - 100 * frac:.0f} points)"
    m = machine_info(a.device)
    ratio = rows[0]['step s (median)'] / rows[1]['step s (median)']
    text = (f"### Training-step throughput against the measured matmul peak\n\n{m['date']}, {m['device']} ({m['cpu_threads']} threads), "
            f"torch {m['torch']}, MONAI {m['monai']}. fp32 matmul peak: **{peak / 1e9:.1f} GFLOP/s**, the highest of {len(mm_all)} "
            f"measurements (1024², 2048², 4096², median of 3 each, taken {len(refs)} times: before, between and after the networks; "
            f"they ranged {min(mm_all) / 1e9:.0f}–{peak / 1e9:.0f} GFLOP/s); "
            f"a 64→64-channel 3×3×3 Conv3d forward on 4×32³, measured alongside: up to {conv_rate / 1e9:.1f} GFLOP/s — the best measured kernel "
            f"is {'the convolution' if conv_rate > peak else 'the matmul'}, so above 100 % of the matmul peak means the matmul is not "
            f"this machine's limit. "
            f"Batch {a.batch} of {a.size}³; step = forward + backward + Adam; FLOPs counted by `FlopCounterMode`.\n\n"
            + markdown_table(rows) + f"\n\nFSQ autoencoder step time / AutoencoderKlMaisi step time at the same channel widths: {ratio:.2f}.")
    grids = [tuple(int(v) for v in g.lower().split('x')) for g in a.patch_grids]
    prow = patching_rows(grids, a.patch_batch, dev, max(1, a.repeats - 2))
    text += ("\n\n### Token patching: transformer cost against sequence length\n\nOne training step (forward + backward + Adam) of the "
             f"MaskGiT transformer (256 wide, 4 blocks, batch {a.patch_batch}) on token grids of growing size, with every token a sequence "
             "element (p=1) and with 2×2×2 tokens per element (p=2, `model.patch_size: 2`, as the packaged BraTS configs). Attention grows "
             "with the square of the sequence, so the saving grows with the grid: the ratios are measured in this run.\n\n" + markdown_table(prow))
    print(text)
    if a.markdown: Path(a.markdown).parent.mkdir(parents=True, exist_ok=True); Path(a.markdown).write_text(text + '\n')
    if a.json: Path(a.json).write_text(json.dumps({'machine': m, 'peak_flops': peak, 'conv_flops': conv_rate, 'references': refs, 'rows': rows, 'patching': prow}, indent=1))
    return rows

if __name__ == '__main__': main()
