"""Every config shipped in prod9/configs validates; errors name file and key."""
import pytest
from prod9.config import list_configs, config_path, load_config, StageConfig, ConfigError, CONFIG_DIR

ENV = {'BRATS_DATA_DIR': '/data/brats', 'MEDMNIST_DATA_DIR': '/data/medmnist', 'NIFTI_DATA_DIR': '/data/nifti'}

def test_configs_are_shipped():
    names = list_configs()
    assert 'data/phantoms.yaml' in names and len(names) >= 4
    assert CONFIG_DIR.is_dir() and (CONFIG_DIR.parent / '__init__.py').exists()

@pytest.mark.parametrize('name', [n for n in list_configs() if n.startswith('data/')])
def test_data_configs_validate(name):
    cfg = load_config(config_path(name), StageConfig, env=ENV)
    assert cfg.data.source in ('phantoms', 'brats', 'medmnist3d', 'nifti_folder')

def test_required_variable_error_names_file_and_key():
    with pytest.raises(ConfigError) as e: load_config(config_path('data/brats.yaml'), StageConfig, env={})
    msg = str(e.value)
    assert msg.startswith(str(config_path('data/brats.yaml'))) and 'data.data_dir: environment variable BRATS_DATA_DIR is not set' in msg
