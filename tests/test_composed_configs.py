"""A user's config of a few lines on a packaged base trains through the CLI, and `--print-config` says where each value came from."""
import torch
from test_real_mri_recipe import t1_folder

def test_short_user_config_on_a_packaged_base_trains(cli, tmp_path):
    data = t1_folder(tmp_path / 'scans', n=3)
    mine = tmp_path / 'mine.yaml'
    mine.write_text(f"base: maskgit/nifti/stage1/real_mri.yaml\n"
                    f"data: {{data_dir: {data}, roi_size: [16, 16, 16], crops_per_volume: 2, val_fraction: 0.34}}\n"
                    f"trainer: {{devices: 1, max_epochs: 1, enable_progress_bar: false}}\n")
    assert len(mine.read_text().splitlines()) <= 6
    r = cli('prod9-train-autoencoder', 'train', '--config', mine, '--print-config')
    assert r.returncode == 0, r.stderr[-3000:]
    lines = {ln.split(':', 1)[0].strip(): ln for ln in r.stdout.splitlines()}
    assert lines['data_dir'].endswith(f"# {mine}") and lines['devices'].endswith(f"# {mine}")
    assert lines['architecture'].endswith('# packaged maskgit/nifti/stage1/real_mri.yaml')        # the recipe, from the packaged stage config
    assert lines['source'].endswith('# packaged data/nifti_folder.yaml')                          # the data set, from the packaged data base
    assert lines['pattern'].endswith('# default')
    assert 'roi_size: [16, 16, 16]    # from data.roi_size' not in r.stdout      # the recipe sets its window (64^3): a file, not derived
    r = cli('prod9-train-autoencoder', 'train', '--config', mine, '--output-dir', tmp_path / 'run')
    assert r.returncode == 0, r.stderr[-3000:]
    cfg = torch.load(tmp_path / 'run' / 'last.ckpt', weights_only=True)['hyper_parameters']['config']
    assert cfg['data']['data_dir'] == str(data) and cfg['trainer']['devices'] == 1 and cfg['trainer']['max_epochs'] == 1
    assert cfg['model']['architecture'] == 'patch' and list(cfg['data']['spacing']) == [2.0, 2.0, 2.0]     # the rest is the packaged recipe

def test_an_error_in_a_base_names_that_file(cli, tmp_path):
    (tmp_path / 'mydata.yaml').write_text("data: {source: phantoms, num_case: 4}\n")
    (tmp_path / 'stage.yaml').write_text("base: [maskgit/phantoms/stage1/base.yaml, mydata.yaml]\ntrainer: {max_epochs: 1}\n")
    r = cli('prod9-train-autoencoder', 'train', '--config', tmp_path / 'stage.yaml')
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr[-2000:]
    assert f"{tmp_path / 'mydata.yaml'}: data.num_case: unknown key" in r.stderr
    (tmp_path / 'loop.yaml').write_text("base: loop.yaml\n")
    r = cli('prod9-train-autoencoder', 'train', '--config', tmp_path / 'loop.yaml')
    assert r.returncode == 1 and 'bases form a cycle' in r.stderr and len(r.stderr.strip().splitlines()) == 1
