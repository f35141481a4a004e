"""Run by tests/test_ddp.py: a tiny stage-1 FSQ autoencoder (with a discriminator that sits out the first step) trained on eight fixed
16^3 phantoms, batch 4 in one process or 2 + 2 in two DDP processes on CPU (gloo), validated on two more (one per process under DDP).
Each process saves its losses, its logged validation metric and its final weights.

    python tests/ddp_worker.py OUT DEVICES [conv|patch|conv,patch]

Each architecture named trains in turn (one launch of the processes), writing OUT/ARCH/rank{r}.pt. With `patch` the model is the patch codec, whose linear path is fitted to the first training batches before the first step: under DDP
from both processes' batches together.
"""
import sys
from pathlib import Path
import torch
import lightning as L
from torch.utils.data import DataLoader, Dataset
from prod9.phantoms import make_phantom
from prod9.training.autoencoder_fsq import AutoencoderStageConfig, AutoencoderFSQLightning
from prod9.training.engine import fit_stage

class Phantoms(Dataset):
    def __init__(self, seeds): self.x = [torch.as_tensor(make_phantom((16, 16, 16), s)['T1']).float()[None] for s in seeds]
    def __len__(self): return len(self.x)
    def __getitem__(self, i): return {'image': self.x[i], 'label': 0}

class Record(L.Callback):
    "Each process's loss at every step and its weights at the end, in OUT/rank{r}.pt."
    def __init__(self, out): self.out, self.losses, self.seen = Path(out), [], []
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if not hasattr(self, 'first'): self.first = {k: v.detach().cpu().clone() for k, v in pl_module.autoencoder.state_dict().items()}
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs['loss'] if isinstance(outputs, dict) else outputs))
        self.seen.append([round(float(v), 3) for v in batch['image'].flatten(1).sum(1)])
    def on_validation_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking: self.val = float(trainer.callback_metrics['val_l1'])     # what best.ckpt and early stopping read
    def on_train_end(self, trainer, pl_module):
        torch.save({'losses': self.losses, 'val_l1': self.val, 'weights': {k: v.detach().cpu() for k, v in pl_module.autoencoder.state_dict().items()},
                    'world_size': trainer.world_size, 'seen': self.seen, 'first': self.first}, self.out / f'rank{trainer.global_rank}.pt')

def main(out, devices:int, archs:str='conv'):
    for arch in archs.split(','): fit(Path(out) / arch, devices, arch)

def fit(out:Path, devices:int, arch:str):
    out.mkdir(parents=True, exist_ok=True)
    cfg = AutoencoderStageConfig(
        output_dir=str(out / 'run'),
        model=({'channels': [8, 8], 'levels': [5, 5, 5], 'num_res_blocks': 1, 'norm_num_groups': 4} if arch == 'conv' else
               {'architecture': 'patch', 'channels': [8], 'levels': [5, 5, 5], 'num_res_blocks': 1, 'norm_num_groups': 4}),
        loss={'adversarial': {'weight': 0.1, 'warmup_steps': 1, 'disc_channels': 8, 'disc_layers': 2}},
        training={'lr': 1e-3},
        trainer={'accelerator': 'cpu', 'devices': devices, 'strategy': 'ddp' if devices > 1 else 'auto', 'max_epochs': 1,
                 'enable_progress_bar': False, 'loggers': ['csv'], 'log_every_n_steps': 1})
    L.seed_everything(0)
    module = AutoencoderFSQLightning(cfg.model_dump())
    # Under DDP Lightning gives the training loader a shuffling DistributedSampler (seed 0, epoch 0): rank r reads perm[r::2] two at a
    # time. One process reading perm in order, four at a time, sees the same global batches.
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(0)).tolist()
    train = DataLoader(Phantoms(range(8)), batch_size=4 // devices, sampler=perm if devices == 1 else None)
    val = DataLoader(Phantoms(range(8, 10)), batch_size=1)
    fit_stage(module, cfg, train=train, val=val, monitor='val_l1', quiet=True, callbacks=[Record(out)])

if __name__ == '__main__': main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:4])
