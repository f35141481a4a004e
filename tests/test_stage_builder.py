"""A stage declared in this file alone (its declaration, a config and a Lightning module; nothing else in prod9 edited) is loadable with
`prod9.load`, gets its command through the builder, and a file of another kind given to it is refused with one line."""
import pytest, torch
from pydantic import Field
import prod9
from prod9.config import StageConfig, StrictModel
from prod9.training.engine import StageModule
from prod9.stages import Stage, register_stage, unregister_stage, stage_of, KINDS
from prod9.cli.command import stage_command

class ToyModel(StrictModel):
    channels: int = Field(1, ge=1)

class ToyStageConfig(StageConfig):
    "A toy stage: one 3x3x3 convolution that learns to copy its input."
    model: ToyModel = Field(default_factory=ToyModel)

class ToyLightning(StageModule):
    config_class = ToyStageConfig
    def __init__(self, config):
        super().__init__(config)
        self.net = torch.nn.Conv3d(1, self.cfg.model.channels, 3, padding=1)
    def _loss(self, batch): x = batch['image']; return (self.net(x) - x).abs().mean(), x.shape[0]
    def training_step(self, batch, i):
        loss, n = self._loss(batch); self.log_train(loss, n); return loss
    def validation_step(self, batch, i):
        loss, n = self._loss(batch); self.log('val_toy', loss, batch_size=n)
    def test_step(self, batch, i):
        loss, n = self._loss(batch); self.log('test_toy', loss, batch_size=n)
    def configure_optimizers(self): return torch.optim.Adam(self.parameters(), 1e-2)

TOY = Stage('toy', 'toy', 'prod9-train-toy', "A toy stage: a convolution that learns the identity", f'{__name__}:ToyStageConfig',
            f'{__name__}:ToyLightning', f'{__name__}:main', 'val_toy', ('train', 'validate', 'test'))
main = stage_command(TOY)          # the whole command: the builder and the declaration, no hooks

@pytest.fixture
def toy():
    register_stage(TOY)
    yield TOY
    unregister_stage('toy')
    assert 'ToyLightning' not in KINDS

def test_a_toy_stage_declared_here_trains_loads_and_refuses_other_kinds(toy, tmp_path, capsys):
    cfg = tmp_path / 'toy.yaml'
    cfg.write_text(f"output_dir: {tmp_path / 'run'}\ndata: {{source: phantoms, num_cases: 4, shape: [16, 16, 16], roi_size: [16, 16, 16], batch_size: 2, val_fraction: 0.5}}\n"
                   "trainer: {max_epochs: 1, enable_progress_bar: false, loggers: [csv]}\n")
    assert stage_of(ToyStageConfig) is toy and KINDS['ToyLightning'].made_by == 'prod9-train-toy train'
    assert main(['train', '--config', str(cfg)]) == 0
    ck = tmp_path / 'run' / 'last.ckpt'
    m = prod9.load(ck)
    assert isinstance(m, ToyLightning) and not m.training
    assert torch.equal(m.net.weight, torch.load(ck, weights_only=True)['state_dict']['net.weight'])
    assert main(['validate', '--config', str(cfg), '--checkpoint', str(ck)]) == 0
    assert 'val_toy' in capsys.readouterr().out
    # a file of another kind: the command and prod9.load both refuse it, in one line that says what it is
    from prod9.autoencoder.autoencoder_fsq import FSQModelConfig, build_autoencoder
    from prod9.training.autoencoder_fsq import export_autoencoder
    ae = export_autoencoder(build_autoencoder(FSQModelConfig(channels=[8, 8], levels=[5, 5, 5])), FSQModelConfig(channels=[8, 8], levels=[5, 5, 5]),
                            tmp_path / 'ae.safetensors')
    capsys.readouterr()
    assert main(['test', '--config', str(cfg), '--checkpoint', str(ae)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"prod9-train-toy: error: {ae}: an FSQ autoencoder export, not a prod9-train-toy checkpoint (written by `prod9-train-toy train`)"], err
    assert main(['train', '--config', str(cfg), '--output-dir', str(tmp_path / 'again'), '--checkpoint', str(ae)]) == 1     # not a run to resume
    assert 'cannot resume from it' in capsys.readouterr().err
    with pytest.raises(ValueError, match='an FSQ autoencoder export, not a prod9-train-toy checkpoint'): prod9.load(ae, expect='ToyLightning')
