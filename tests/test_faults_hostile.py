"""Faults found by the second probe of every console script (issue 37), by class, through the console scripts: a path traversal in
detached NRRD headers, writes that replaced data, caches that did not follow the data, settings that failed after the work began
or with a traceback, and messages that did not say what or where. Each is exit 1 with one line, and nothing is lost. Hypothesis
properties drive hostile folders (clashing names, links, detached headers) and `--set` values through the commands."""
import json, os, shutil, tempfile
from pathlib import Path
from types import SimpleNamespace as NS
import numpy as np, torch
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from prod9.io import write_nifti, read_volume
from prod9.phantoms import make_phantom
from prod9 import preprocess
from prod9.cli import autoencoder
from test_faults import one_line_error, config, TINY, trained    # noqa: F401  (trained: a tiny stage-1 run, this module's own)

NHDR = ('NRRD0004\ntype: uint8\ndimension: 3\nspace: left-posterior-superior\nsizes: 16 16 4\n'
        'space directions: (1,0,0) (0,1,0) (0,0,1)\nspace origin: (0,0,0)\nencoding: raw\n')

# security ------------------------------------------------------------------------------------------------------------------
def test_detached_nrrd_header_cannot_read_other_files(cli, trained, tmp_path):
    secret = tmp_path / 'secret.txt'; secret.write_bytes(b'root:x:0:0:root:/root:/bin/bash\n' * 64)
    d = tmp_path / 'scans'; d.mkdir()
    (d / 'evil.nhdr').write_text(NHDR + 'byte skip: -1\ndata file: ../secret.txt\n\n')
    r = cli('prod9-preprocess', 'check', d)                     # was: "consistent", exit 0
    assert r.returncode == 1 and "'data file: ../secret.txt' points outside the header's folder" in r.stdout and 'consistent' in r.stdout
    assert '1 file(s): NOT consistent' in r.stdout
    r = cli('prod9-train-autoencoder', 'infer', '--config', trained['cfg'], '--checkpoint', trained['export'],
            '--input', d / 'evil.nhdr', '--output', tmp_path / 'o.nii.gz')
    one_line_error(r, 'evil.nhdr', 'points outside the header')
    assert not (tmp_path / 'o.nii.gz').exists()

# data lost -----------------------------------------------------------------------------------------------------------------
def test_workflow_setup_keeps_data_inside_the_work_dir(cli, tmp_path):
    w = tmp_path / 'W'; (w / 'dataroot').mkdir(parents=True)
    vols = {f'v{i}.nii.gz': np.random.default_rng(i).random((16, 16, 16)).astype(np.float32) for i in range(2)}
    for n, v in vols.items(): write_nifti(v, w / 'dataroot' / n)
    r = cli('prod9-maisi-workflow', 'setup', '--data-path', w / 'dataroot', '--work-dir', w)
    assert r.returncode == 0, r.stderr
    for n, v in vols.items():
        f = w / 'dataroot' / n
        assert f.is_file() and not f.is_symlink(), f            # was: a link to itself, the data gone
        np.testing.assert_array_equal(read_volume(f).data, v)
    # a real file of another name's data in dataroot is never replaced by a link
    other = tmp_path / 'other'; other.mkdir(); write_nifti(vols['v0.nii.gz'] * 2, other / 'v0.nii.gz'); write_nifti(vols['v1.nii.gz'], other / 'v1.nii.gz')
    r = cli('prod9-maisi-workflow', 'setup', '--data-path', other, '--work-dir', w)
    one_line_error(r, w / 'dataroot' / 'v0.nii.gz', 'exists and is not a link that setup made')
    np.testing.assert_array_equal(read_volume(w / 'dataroot' / 'v0.nii.gz').data, vols['v0.nii.gz'])

def test_resample_refuses_clashing_output_names(cli, tmp_path):
    d = tmp_path / 'in'; d.mkdir()
    for n in ('scan.nii.gz', 'scan.nii'): write_nifti(np.ones((8, 8, 8), np.float32), d / n)
    import nrrd; nrrd.write(str(d / 'scan.nrrd'), np.ones((8, 8, 8), np.float32), {'space': 'left-posterior-superior',
                            'space directions': np.eye(3), 'space origin': np.zeros(3)})
    r = cli('prod9-preprocess', 'resample', d, tmp_path / 'out', '--target-spacing', '2', '2', '2')
    one_line_error(r, 'scan.nii, scan.nii.gz, scan.nrrd would all be written to', 'nothing was written')
    assert not (tmp_path / 'out').exists()
    for sp in (['1e-6', '1e-6', '1e-6'], ['inf', '1', '1'], ['nan', '1', '1']):
        os.remove(d / 'scan.nii'); os.remove(d / 'scan.nrrd') if (d / 'scan.nrrd').exists() else None
        r = cli('prod9-preprocess', 'resample', d, tmp_path / 'out', '--target-spacing', *sp)
        one_line_error(r, '--target-spacing' if sp[0] != '1e-6' else 'of memory this machine has')
        write_nifti(np.ones((8, 8, 8), np.float32), d / 'scan.nii')

def test_infer_never_writes_over_its_input(cli, trained, tmp_path):
    src = tmp_path / 'scan.nii.gz'; shutil.copy(trained['input'], src); before = src.read_bytes()
    os.link(src, tmp_path / 'hard.nii.gz'); (tmp_path / 'soft.nii.gz').symlink_to(src)
    for out in (src, tmp_path / 'hard.nii.gz', tmp_path / 'soft.nii.gz', tmp_path / '.' / 'scan.nii.gz'):
        r = cli('prod9-train-autoencoder', 'infer', '--config', trained['cfg'], '--checkpoint', trained['export'], '--input', src, '--output', out)
        one_line_error(r, '--output', 'is the input', 'writing there would replace it')
    assert src.read_bytes() == before

def test_overwrite_deletes_only_the_runs_own_checkpoints(cli, tmp_path):
    c = config(tmp_path)
    assert cli('prod9-train-autoencoder', 'train', '--config', c).returncode == 0
    run = tmp_path / 'run'
    keep = {'my_model.ckpt': b'mine', 'best_of_2023.ckpt.bak': b'x', 'periodic/notes.ckpt': b'y'}
    for n, b in keep.items(): (run / n).parent.mkdir(exist_ok=True); (run / n).write_bytes(b)
    r = cli('prod9-train-autoencoder', 'train', '--config', c, '--overwrite')
    assert r.returncode == 0, r.stderr
    for n, b in keep.items(): assert (run / n).read_bytes() == b, n
    assert (run / 'best.ckpt').is_file() and (run / 'last.ckpt').is_file()

# silently wrong output -----------------------------------------------------------------------------------------------------
def test_token_cache_follows_the_data(trained, tmp_path):
    from prod9.config import NiftiFolderDataConfig, SlidingWindowConfig
    from prod9.training.cache import pre_encode, load_tokens
    d = tmp_path / 'scans'; d.mkdir()
    for i in range(3): ph = make_phantom((16, 16, 16), i); write_nifti(ph['T1'], d / f'c{i}.nii.gz', ph['affine'])
    cfg = NiftiFolderDataConfig(data_dir=str(d), roi_size=(16, 16, 16), val_fraction=0.34)
    sw = SlidingWindowConfig(roi_size=(16, 16, 16))
    logs = []
    p1 = pre_encode(trained['export'], cfg, sw, tmp_path / 'cache', log=logs.append)
    t1 = load_tokens(p1['train'])['tokens'].clone()
    pre_encode(trained['export'], cfg, sw, tmp_path / 'cache', log=logs.append)
    assert 'is up to date' in logs[-1]
    ph = make_phantom((16, 16, 16), 7)
    for f in sorted(d.iterdir()): write_nifti(ph['FLAIR'], f, ph['affine'])     # the same names, other volumes
    logs.clear(); p2 = pre_encode(trained['export'], cfg, sw, tmp_path / 'cache', log=logs.append)
    assert not any('is up to date' in l for l in logs), logs                      # was: "up to date", trained on the old volumes
    assert not torch.equal(load_tokens(p2['train'])['tokens'], t1)

def test_generate_follows_the_commands_config():
    "`--set sampler.steps=1` / `--set scheduler.num_inference_steps=1` on generate reach the sampler; a flag still wins."
    from prod9.cli.shared import use_window_flags
    from prod9.training.transformer import TransformerStageConfig
    from prod9.training.diffusion import DiffusionStageConfig
    args = NS(roi_size=None, overlap=None, sw_batch_size=None)
    m = NS(cfg=TransformerStageConfig(autoencoder_path='ae.safetensors'))
    use_window_flags(m, args, TransformerStageConfig.model_validate({'autoencoder_path': 'ae.safetensors', 'sampler': {'steps': 1, 'guidance_scale': 2.0}}))
    assert (m.cfg.sampler.steps, m.cfg.sampler.guidance_scale) == (1, 2.0)
    m = NS(cfg=DiffusionStageConfig(space='pixel'))
    use_window_flags(m, args, DiffusionStageConfig.model_validate({'space': 'pixel', 'scheduler': {'num_inference_steps': 1}}))
    assert m.cfg.scheduler.num_inference_steps == 1

# a hang, and tracebacks --------------------------------------------------------------------------------------------------
def test_huge_num_samples_is_refused_at_once(cli, tmp_path):
    r = cli('prod9-train-transformer', 'generate', '--config', 'maskgit/phantoms/stage2/base.yaml', '--checkpoint', tmp_path / 'x.ckpt',
            '--output', tmp_path / 'gen', '--num-samples', '1000000000000', '--batch-size', '1000000000000')
    one_line_error(r, '--num-samples 1000000000000 is more than prod9 generates in one command')

@pytest.mark.parametrize('sets,want', [
    (['trainer.devices=0'], 'devices: 0 runs on no device'),
    (['trainer.accelerator=tpu'], "trainer.accelerator: Input should be 'auto', 'cpu', 'gpu', 'cuda' or 'mps'"),
    (['trainer.max_steps=-5'], 'trainer.max_steps: Input should be greater than or equal to -1'),
    (['trainer.val_check_interval=0'], 'val_check_interval: 0 must be'),
    (['compile.enabled=true', 'compile.backend=no_such_backend'], "backend: 'no_such_backend' is not a torch.compile backend"),
    (['data.roi_size=[100000,100000,100000]'], 'data.roi_size: data.roi_size [100000, 100000, 100000] (batch 4) needs'),
    (['seed=99999999999'], 'seed: Input should be less than 4294967296'),
])
def test_settings_are_checked_before_work_starts(cli, tmp_path, sets, want):
    c = config(tmp_path)
    r = cli('prod9-train-autoencoder', 'train', '--config', c, *[a for s in sets for a in ('--set', s)])
    one_line_error(r, want)
    assert not (tmp_path / 'run').exists()                       # refused before the run's folder was made

def test_messages_say_what_and_where(cli, trained, tmp_path):
    c = tmp_path / 'latin1.yaml'; c.write_bytes(b'seed: 1\nname: caf\xe9\n')
    one_line_error(cli('prod9-train-autoencoder', 'train', '--config', c), 'latin1.yaml: is not UTF-8 text (byte 0xe9 at line 2)')
    (tmp_path / 'folder.yaml').mkdir()
    one_line_error(cli('prod9-train-autoencoder', 'train', '--config', tmp_path / 'folder.yaml'), 'folder.yaml: is a folder, not a config file')
    (tmp_path / 'loop.yaml').symlink_to('loop.yaml')
    one_line_error(cli('prod9-train-autoencoder', 'train', '--config', tmp_path / 'loop.yaml'), 'loop.yaml: a symbolic link that dangles or loops')
    one_line_error(cli('prod9-train-autoencoder', 'infer', '--config', trained['cfg'], '--checkpoint', trained['export'], '--seed', str(2**40),
                       '--input', trained['input'], '--output', tmp_path / 'o.nii.gz'), '--seed must be an integer in [0, 2**32)')
    for name, make, want in [('dir.nii.gz', lambda p: p.mkdir(), 'is a folder, expected a NIfTI file'),
                             ('loop.nii.gz', lambda p: p.symlink_to(p.name), 'which does not exist or loops'),
                             ('nodirs.nrrd', lambda p: p.write_bytes(b'NRRD0004\ntype: uint8\ndimension: 3\nsizes: 4 4 4\nencoding: raw\n\n' + bytes(64)),
                              "its NRRD header has no 'space directions'")]:
        make(tmp_path / name)
        r = cli('prod9-train-autoencoder', 'infer', '--config', trained['cfg'], '--checkpoint', trained['export'],
                '--input', tmp_path / name, '--output', tmp_path / 'o.nii.gz')
        one_line_error(r, name, want)

def test_deeply_nested_checkpoint_config(cli, trained, tmp_path):
    from prod9 import load
    ck = torch.load(trained['run'] / 'last.ckpt', weights_only=True)
    deep = {}; node = deep
    for _ in range(10_000): node['a'] = {}; node = node['a']
    ck['hyper_parameters']['config']['model']['extra'] = deep
    import sys
    old = sys.getrecursionlimit(); sys.setrecursionlimit(100_000)          # writing it needs the depth that reading it must refuse
    try: torch.save(ck, tmp_path / 'deep.ckpt')
    finally: sys.setrecursionlimit(old)
    with pytest.raises(ValueError, match='deep.ckpt'): load(tmp_path / 'deep.ckpt')
    r = cli('prod9-train-autoencoder', 'validate', '--config', trained['cfg'], '--checkpoint', tmp_path / 'deep.ckpt')
    one_line_error(r, 'deep.ckpt')

# properties ---------------------------------------------------------------------------------------------------------------
ENTRY = st.sampled_from(['scan.nii.gz', 'scan.nii', 'scan.nrrd', 'SCAN.nii.gz', 'a.nhdr', 'seg.nii.gz', 'link.nii.gz', 'dangling.nii.gz',
                         'loop.nii', 'sub.nii.gz', 'evil.nhdr', 'abs.nhdr', '.hidden.nii.gz'])

@settings(max_examples=int(os.environ.get('PROD9_HYPOTHESIS_EXAMPLES', 25)), deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(names=st.lists(ENTRY, min_size=1, max_size=5, unique=True))
def test_property_hostile_folders(tmp_path, capsys, names):
    """Any folder of clashing names, links, folders and detached headers: `check` and `resample` end with exit 0 or one line; no
    input changes; nothing outside the folder is read; what resample writes has one input each."""
    root = Path(tempfile.mkdtemp(dir=tmp_path)); d = root / 'in'; d.mkdir()
    outside = root / 'outside.raw'; outside.write_bytes(bytes(range(256)) * 4)
    for n in names:
        p = d / n
        if n == 'link.nii.gz': write_nifti(np.ones((8, 8, 8), np.float32), root / 'target.nii.gz'); p.symlink_to(root / 'target.nii.gz')
        elif n == 'dangling.nii.gz': p.symlink_to(root / 'missing.nii.gz')
        elif n == 'loop.nii': p.symlink_to(n)
        elif n == 'sub.nii.gz': p.mkdir()
        elif n == 'evil.nhdr': p.write_text(NHDR + 'byte skip: -1\ndata file: ../outside.raw\n\n')
        elif n == 'abs.nhdr': p.write_text(NHDR + f'data file: {outside}\n\n')
        elif n == 'a.nhdr': (d / 'a.raw').write_bytes(bytes(1024)); p.write_text(NHDR + 'data file: a.raw\n\n')
        elif n.endswith('.nrrd'):
            import nrrd; nrrd.write(str(p), np.ones((8, 8, 8), np.float32), {'space': 'left-posterior-superior', 'space directions': np.eye(3), 'space origin': np.zeros(3)})
        else: write_nifti(np.ones((8, 8, 8), np.float32), p)
    before = {p: (p.read_bytes() if p.is_file() else None) for p in d.iterdir()}
    rc = preprocess.main(['check', str(d)]); cap = capsys.readouterr()
    assert rc in (0, 1) and 'Traceback' not in cap.out + cap.err
    if {'evil.nhdr', 'abs.nhdr'} & set(names): assert rc == 1 and 'points outside' in cap.out
    rc = preprocess.main(['resample', str(d), str(root / 'out'), '--target-spacing', '2', '2', '2']); cap = capsys.readouterr()
    err = cap.err.strip().splitlines()
    assert rc == 0 or (rc == 1 and len(err) == 1 and err[0].startswith('prod9-preprocess: error: ')), (names, cap.err[-2000:])
    assert {p: (p.read_bytes() if p.is_file() else None) for p in d.iterdir()} == before
    if rc == 0: assert len(list((root / 'out').glob('*.nii.gz'))) == len([n for n in names if not n.startswith('.') and n not in ('a.raw',)])

SET_KEYS = ['trainer.devices', 'trainer.accelerator', 'trainer.max_steps', 'trainer.val_check_interval', 'trainer.limit_val_batches',
            'trainer.precision', 'trainer.gradient_clip_val', 'compile.backend', 'seed', 'data.roi_size', 'sliding_window.sw_batch_size',
            'callbacks.checkpoint.save_top_k', 'ema.decay']
SET_VALUES = st.one_of(st.integers(-10, 10), st.sampled_from([0.0, -1.5, 1e300, float('nan'), float('inf'), 2**64, 'tpu', 'auto', '',
                       'no_such_backend', [100000, 100000, 100000], [0], None, True, {'a': 1}]))

@settings(max_examples=int(os.environ.get('PROD9_HYPOTHESIS_EXAMPLES', 25)), deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(key=st.sampled_from(SET_KEYS), value=SET_VALUES)
def test_property_set_values_on_training(tmp_path, capsys, monkeypatch, key, value):
    "Any `--set` value: the command runs (two steps), or fails with one line and exit 1; never a traceback."
    monkeypatch.chdir(tmp_path)
    out = Path(tempfile.mkdtemp(dir=tmp_path)) / 'run'
    (tmp_path / 'cfg.yaml').write_text(TINY.format(out=out).replace('max_epochs: 1,', 'max_epochs: 1, max_steps: 2, limit_val_batches: 1,'))
    rc = autoencoder.main(['train', '--config', str(tmp_path / 'cfg.yaml'), '--set', f'{key}={json.dumps(value)}'])
    err = capsys.readouterr().err.strip().splitlines()
    if rc != 0: assert rc == 1 and len(err) == 1 and err[0].startswith('prod9-train-autoencoder: error: '), (key, value, err[-20:])

def test_a_cache_in_use_by_another_run_is_not_replaced(trained, tmp_path):
    "Two stage-2 runs on one cache folder: while one trains on it, another that needs other tokens stops with one line, nothing replaced."
    import subprocess, sys
    from prod9.config import PhantomDataConfig, SlidingWindowConfig
    from prod9.training.cache import pre_encode, _IN_USE
    cfg = PhantomDataConfig(num_cases=3, shape=(16, 16, 16), roi_size=(16, 16, 16), val_fraction=0.34)
    sw = SlidingWindowConfig(roi_size=(16, 16, 16))
    cache = tmp_path / 'cache'
    paths = pre_encode(trained['export'], cfg, sw, cache, log=lambda m: None)
    for f in _IN_USE.values(): f.close()
    _IN_USE.clear()                                              # as if this process had ended
    before = paths['train'].read_bytes()
    holder = subprocess.Popen([sys.executable, '-c', "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_SH); "
                               "print('held', flush=True); time.sleep(60)", str(cache / '.prod9-cache.use')], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'      # another run is training on the cache
        other = cfg.model_copy(update={'num_cases': 4})
        with pytest.raises(ValueError, match='another running prod9 process is training on this cache'):
            pre_encode(trained['export'], other, sw, cache, log=lambda m: None)
        assert paths['train'].read_bytes() == before
        pre_encode(trained['export'], cfg, sw, cache, log=lambda m: None)     # the same tokens: shared, not refused
    finally: holder.kill(); holder.wait()

def test_unknown_monitor_fails_before_training(cli, tmp_path):
    "`callbacks.checkpoint.monitor: no_such_metric` stops at Lightning's sanity check, naming the key and the metrics there are."
    c = config(tmp_path, TINY.replace('max_epochs: 1,', 'max_epochs: 3,'))
    r = cli('prod9-train-autoencoder', 'train', '--config', c, '--set', 'callbacks.checkpoint.monitor=no_such_metric')
    one_line_error(r, 'callbacks.checkpoint.monitor', "'no_such_metric' is not a metric this stage logs; it logs", 'val_l1')
    assert not list((tmp_path / 'run').glob('*.ckpt'))           # no epoch was trained

COMMANDS = {'prod9-train-transformer': 'maskgit/phantoms/stage2/base.yaml', 'prod9-train-maskgit-controlnet': 'maskgit/phantoms/stage3/controlnet.yaml',
            'prod9-train-maisi-vae': 'maisi/phantoms/vae.yaml', 'prod9-train-maisi-diffusion': 'maisi/phantoms/diffusion.yaml',
            'prod9-train-maisi-controlnet': 'maisi/phantoms/controlnet.yaml', 'prod9-train-autoencoder': 'maskgit/phantoms/stage1/base.yaml'}

@settings(max_examples=int(os.environ.get('PROD9_HYPOTHESIS_EXAMPLES', 24)), deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(cmd=st.sampled_from(sorted(COMMANDS)), key=st.sampled_from(SET_KEYS + ['sampler.steps', 'scheduler.num_inference_steps', 'data.batch_size']),
       value=SET_VALUES)
def test_property_set_values_on_every_command(cli, tmp_path, cmd, key, value):
    "Any `--set` value on any stage's packaged config: the resolved config prints, or the command fails with one line and exit 1."
    r = cli(cmd, 'train', '--config', COMMANDS[cmd], '--set', f'{key}={json.dumps(value)}', '--print-config')
    if r.returncode != 0: one_line_error(r, f'{cmd}: error: ')
