"""What the docs promise, through the console scripts (issue 36): the guides' key names win over packaged values, the guides'
preprocessing flags, their in-context YAML and MedGen's `training.*` keys, export names that say their format, comments that count
right. Each test reproduced its item's defect before the fix."""
import re
import numpy as np
import pytest, yaml
from prod9.io import write_nifti
from prod9.config import CONFIG_DIR, list_configs

def printed(cli, prog, config, *sets, tmp_path=None, env=None):
    "`--print-config` of `config` with `--set`s: {dotted key: (value text, origin)}."
    args = [a for kv in sets for a in ('--set', kv)]
    r = cli(prog, 'train', '--config', config, *args, '--print-config', env={'BRATS_DATA_DIR': str(tmp_path), **(env or {})})
    assert r.returncode == 0, r.stderr[-2000:]
    out, path = {}, []
    for line in r.stdout.splitlines():
        m = re.match(r'^( *)([^:#]+):(?: (.*?))?(?:    # (.*))?$', line)
        if not m: continue
        depth = len(m.group(1)) // 2
        path = path[:depth] + [m.group(2)]
        if m.group(3) is not None: out['.'.join(path)] = (m.group(3), m.group(4))
    return out

def test_an_alias_on_the_command_line_replaces_the_packaged_value(cli, tmp_path):
    "Items 2 and 3: `--set` with the guides' names over packaged configs: no 'set twice', and the command line is named as the origin."
    c = printed(cli, 'prod9-train-autoencoder', 'maskgit/phantoms/stage1/base.yaml', 'loss.loss_type=ffl', tmp_path=tmp_path)
    assert c['loss.focal_frequency.weight'] == ('1.0', 'command line')
    c = printed(cli, 'prod9-train-transformer', 'maskgit/phantoms/stage2/base.yaml', 'sampler.num_steps=8', 'sampler.scheduler_type=log2', tmp_path=tmp_path)
    assert c['sampler.steps'] == ('8', 'command line') and c['sampler.schedule'] == ('log2', 'command line')
    c = printed(cli, 'prod9-train-maisi-vae', 'maisi/phantoms/vae.yaml', f'vae_export_path={tmp_path}/v.safetensors', tmp_path=tmp_path)
    assert c['export_path'] == (f'{tmp_path}/v.safetensors', 'command line')
    c = printed(cli, 'prod9-train-maisi-controlnet', 'maisi/phantoms/controlnet.yaml', 'condition=mask', tmp_path=tmp_path)
    assert c['controlnet.control_type'] == ('mask', 'command line')

def test_an_alias_in_a_file_replaces_its_bases_value(cli, tmp_path):
    "Item 2: the user's `loss_type: ffl` wins over a base that switches the focal frequency loss off; `condition: both` over a packaged control type."
    (tmp_path / 'off.yaml').write_text("base: maskgit/phantoms/stage1/base.yaml\nloss: {focal_frequency: {weight: 0.0}}\n")
    (tmp_path / 'mine.yaml').write_text("base: off.yaml\nloss: {loss_type: ffl}\n")
    c = printed(cli, 'prod9-train-autoencoder', tmp_path / 'mine.yaml', tmp_path=tmp_path)
    assert c['loss.focal_frequency.weight'] == ('1.0', str(tmp_path / 'mine.yaml'))
    (tmp_path / 'cn.yaml').write_text("base: maisi/phantoms/controlnet.yaml\ncondition: mask\n")
    assert printed(cli, 'prod9-train-maisi-controlnet', tmp_path / 'cn.yaml', tmp_path=tmp_path)['controlnet.control_type'][0] == 'mask'
    (tmp_path / 'both.yaml').write_text("base: maskgit/phantoms/stage2/base.yaml\nsampler: {num_steps: 8, steps: 9}\n")
    r = cli('prod9-train-transformer', 'train', '--config', tmp_path / 'both.yaml', '--print-config')
    assert r.returncode != 0 and 'both.yaml: sampler.steps: set twice' in r.stderr and len(r.stderr.strip().splitlines()) == 1

# seed 001's in-context YAML, as the training guide prints it under "Create or use config file"
GUIDE_IN_CONTEXT = """
model:
  transformer_type: "single_stream"  # Use TransformerDecoderSingleStream
  hidden_dim: 512
  num_layers: 12
  num_heads: 8

modality_processor:
  latent_dim: 5              # FSQ levels [8,8,8,6,5]
  hidden_dim: 512
  num_classes: 4             # T1, T1ce, T2, FLAIR
  patch_size: 2
  max_context_length: 8      # Max number of (label, latent) pairs

training:
  # Source modalities for in-context learning
  source_modalities: [0, 1, 2]  # T1, T1ce, T2
  target_modality: 3            # FLAIR
  batch_size: 4
"""

def test_the_guides_in_context_yaml(cli, tmp_path):
    "Item 6: `training.batch_size` of the guide's in-context YAML is `data.batch_size`; the rest of the block is read as well."
    p = tmp_path / 'in_context.yaml'; p.write_text("base: maskgit/brats/stage2/in_context.yaml\n" + GUIDE_IN_CONTEXT)
    c = printed(cli, 'prod9-train-transformer', p, tmp_path=tmp_path)
    assert c['data.batch_size'] == ('4', str(p))
    assert c['in_context.source_modalities'][0] == "['0', '1', '2']" and c['model.max_context_length'][0] == '8'
    alone = tmp_path / 'alone.yaml'; alone.write_text(GUIDE_IN_CONTEXT)        # without a base: what is missing, said plainly
    r = cli('prod9-train-transformer', 'train', '--config', alone, '--print-config')
    assert r.returncode != 0 and 'data: no `source:` says which kind this section is' in r.stderr and 'autoencoder_path: required key is missing' in r.stderr

def test_medgen_training_keys(cli, tmp_path):
    "Seed 002's `training.batch_size=32 training.epochs=... training.use_ema=true training.use_min_snr=true training.learning_rate=...`."
    c = printed(cli, 'prod9-train-maisi-diffusion', 'medgen/phantoms_2d/bravo.yaml', 'training.batch_size=32', 'training.epochs=7',
                'training.use_ema=true', 'training.use_min_snr=true', 'training.learning_rate=5e-5', tmp_path=tmp_path)
    assert {k: c[k][0] for k in ('data.batch_size', 'trainer.max_epochs', 'ema.enabled', 'training.min_snr_gamma', 'training.lr')} == \
           {'data.batch_size': '32', 'trainer.max_epochs': '7', 'ema.enabled': 'true', 'training.min_snr_gamma': '5.0', 'training.lr': '5.0e-05'}

def test_preprocess_takes_the_guides_flags_and_says_the_axis_order(cli, tmp_path):
    "Item 4: `--input_dir/--output_dir/--target_spacing/--target_shape` (and --input-dir, --target-size), X Y Z in --help, a transposed warning."
    src = tmp_path / 'original'
    for i in range(2): write_nifti(np.random.default_rng(i).random((32, 32, 6)).astype(np.float32), src / f'case{i}.nii.gz', np.diag([1., 1, 3, 1]))
    r = cli('prod9-preprocess', 'resample', '--help')
    assert r.returncode == 0 and 'X Y Z' in r.stdout and "'0.5 0.5 3.0'" in ' '.join(r.stdout.split())
    # the guide's numbers, slice axis first: done as asked, with one warning naming the order meant
    r = cli('prod9-preprocess', 'resample', '--input_dir', src, '--output_dir', tmp_path / 'a', '--target_spacing', '3.0', '1.0', '1.0',
            '--target_shape', '6', '32', '32')
    assert r.returncode == 0, r.stderr
    assert r.stderr.count('warning:') == 1 and 'give --target-spacing 1 1 3' in r.stderr
    assert 'case0.nii.gz -> ' in r.stdout and '6x32x32 voxels at 3 x 1 x 1 mm (X Y Z, RAS)' in r.stdout
    # prod9's order: no warning
    r = cli('prod9-preprocess', 'resample', '--input-dir', src, '--output-dir', tmp_path / 'b', '--target-spacing', '1', '1', '3', '--target-size', '32', '32', '6')
    assert r.returncode == 0 and 'warning' not in r.stderr and '32x32x6 voxels at 1 x 1 x 3 mm' in r.stdout
    r = cli('prod9-preprocess', 'resample', '--output-dir', tmp_path / 'c', '--target-spacing', '1', '1', '3')
    assert r.returncode != 0 and 'give the input folder: IN_DIR or --input-dir' in r.stderr

@pytest.mark.parametrize('prog,config,key,name,says', [
    ('prod9-train-autoencoder', 'maskgit/phantoms/stage1/base.yaml', 'export_path', 'ae.pt', 'name it *.safetensors'),
    ('prod9-train-maisi-vae', 'maisi/phantoms/vae.yaml', 'vae_export_path', 'vae.pt', 'name it *.safetensors'),
    ('prod9-train-transformer', 'maskgit/phantoms/stage2/base.yaml', 'export_path', 'stage2.safetensors', 'name it *.ckpt'),
])
def test_an_export_name_says_its_format(cli, tmp_path, prog, config, key, name, says):
    "Item 9: a stage-1 export is safetensors bytes, so `.pt` is refused before training; a checkpoint copy is not named `.safetensors`."
    r = cli(prog, 'train', '--config', config, '--set', f'{key}={tmp_path / name}', '--print-config')
    assert r.returncode != 0 and says in r.stderr and 'Value error' not in r.stderr and len(r.stderr.strip().splitlines()) == 1

def test_packaged_comments_count_the_codes_their_levels_give():
    "Item 10: a config's comment that says 'levels a x b x ...: N codes' agrees with the product, and with the levels the config resolves to."
    from prod9.config import load_config
    from prod9.training.autoencoder_fsq import AutoencoderStageConfig
    checked = 0
    for name in list_configs():
        text = (CONFIG_DIR / name).read_text()
        for levels, n in re.findall(r'levels ([\d x·×]+?): ([\d,]+) codes', text):
            want = int(np.prod([int(v) for v in re.findall(r'\d+', levels)]))
            assert int(n.replace(',', '')) == want, f"{name}: the comment says {n} codes for levels {levels}, which give {want:,}"
            model = yaml.safe_load(text).get('model', {})
            if 'levels' in model: assert int(np.prod(model['levels'])) == want, f"{name}: comment {levels} vs model.levels {model['levels']}"
            else: assert int(np.prod(load_config(CONFIG_DIR / name, AutoencoderStageConfig, env={}).model.levels)) == want
            checked += 1
    assert checked >= 1
