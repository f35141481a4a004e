"""Two processes on CPU (DDP over gloo) train like one process on the same global batch (issue 19)."""
import os, subprocess, sys
import torch
import pytest
from conftest import ROOT

def run_workers(*jobs):
    "Launch `ddp_worker.py` for each (out, devices, arch) at once (each on its own port; every launch imports torch anew), then wait for all."
    procs = []
    for k, (out, devices, arch) in enumerate(jobs):
        env = {**os.environ, 'PYTHONPATH': os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')])),
               'OMP_NUM_THREADS': '1', 'MASTER_PORT': str(29500 + (os.getpid() + 7 * k) % 1000)}
        for key in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'NODE_RANK', 'SLURM_PROCID', 'SLURM_NTASKS'): env.pop(key, None)
        procs.append(subprocess.Popen([sys.executable, str(ROOT / 'tests' / 'ddp_worker.py'), str(out), str(devices), arch], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-4000:]

@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    "One two-process launch that trains the conv and then the patch codec, and, at the same time, the conv codec in one process."
    out = tmp_path_factory.mktemp('ddp')
    run_workers((out / 'ddp', 2, 'conv,patch'), (out / 'one', 1, 'conv'))
    return out

def test_two_processes_agree_with_one(runs):
    r0, r1 = (torch.load(runs / 'ddp' / 'conv' / f'rank{r}.pt', weights_only=True) for r in (0, 1))
    one = torch.load(runs / 'one' / 'conv' / 'rank0.pt', weights_only=True)
    assert r0['world_size'] == r1['world_size'] == 2 and one['world_size'] == 1
    assert len(r0['losses']) == len(one['losses']) == 2                    # 8 volumes, global batch 4: two steps either way
    for k, v in r0['weights'].items(): assert torch.equal(v, r1['weights'][k]), k          # both ranks end with the same weights
    # each rank's loss is the mean over its half of the global batch: their average is the one-process loss
    ddp_loss = [(a + b) / 2 for a, b in zip(r0['losses'], r1['losses'])]
    assert ddp_loss == pytest.approx(one['losses'], rel=1e-4), (ddp_loss, one['losses'])
    assert sorted(r0['seen'][0] + r1['seen'][0]) == sorted(one['seen'][0])      # the same global batch, split between the ranks
    assert not (r0['losses'] == r1['losses'])                               # the ranks did see different volumes
    # the monitored validation metric is reduced over both ranks' volumes: every rank logs the one-process value (issue 36, item 5)
    assert r0['val_l1'] == pytest.approx(r1['val_l1'], rel=1e-6) and r0['val_l1'] == pytest.approx(one['val_l1'], rel=1e-4), (r0['val_l1'], r1['val_l1'], one['val_l1'])
    # the DDP run's checkpoint loads in one process, with rank 0's weights
    from prod9.training.autoencoder_fsq import AutoencoderFSQLightning
    m = AutoencoderFSQLightning.from_checkpoint(runs / 'ddp' / 'conv' / 'run' / 'last.ckpt')
    for k, v in m.autoencoder.state_dict().items(): assert torch.equal(v, r0['weights'][k]), k

def test_patch_codec_fit_is_the_same_in_every_process(runs):
    """The patch codec's linear path is fitted before the first step from sums over all processes' batches: both ranks start from the fit
    to all eight volumes at once, and end with the same weights."""
    r0, r1 = (torch.load(runs / 'ddp' / 'patch' / f'rank{r}.pt', weights_only=True) for r in (0, 1))
    for k, v in r0['weights'].items(): assert torch.equal(v, r1['weights'][k]), k
    from ddp_worker import Phantoms
    from prod9.autoencoder.autoencoder_fsq import build_autoencoder
    one = build_autoencoder({'architecture': 'patch', 'channels': [8], 'levels': [5, 5, 5], 'num_res_blocks': 1, 'norm_num_groups': 4})
    bl = one.patch_blocks(torch.stack([Phantoms(range(8))[i]['image'] for i in range(8)]))
    one.init_linear(bl[bl.mean(1) > 0.05])                          # the stage's default init: foreground blocks, spread 1
    for r in (r0, r1):
        assert bool(r['first']['linear_initialised'])
        for k in ('patch_in.weight', 'patch_in.bias', 'patch_out.weight', 'patch_out.bias'):
            torch.testing.assert_close(r['first'][k], one.state_dict()[k], rtol=1e-4, atol=1e-5)
