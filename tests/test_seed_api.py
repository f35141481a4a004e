"""The seed README's "Python API Usage" examples (shared/seeds/000_*.txt), run as written: the code blocks are read from the seed
itself, only the model sizes are shrunk (each substitution must apply, so a changed seed is noticed), and the names the examples
leave undefined (`images`, `large_volume`, `condition_embeddings`, `batch_size`, `model`) are given small values."""
import re
import pytest
import torch

from seed_commands import SEEDS
SHRINK = {  # seed text -> smaller model, same call form
    'latent_channels=64,': 'latent_channels=16,',
    'fmaps=[32, 64, 128, 256, 512],': 'fmaps=[8, 8, 16, 16, 16],',
    'num_layers=12,': 'num_layers=2,',
    'hidden_dim=512,': 'hidden_dim=32,',
    'num_heads=8,': 'num_heads=4,',
    'ffn_dim=2048,': 'ffn_dim=64,',
    'roi_size=(64, 64, 64),': 'roi_size=(32, 32, 32),',
}

def seed_api_blocks() -> list[tuple[str, str]]:
    "(heading, code) of every ```python block under '## Python API Usage' in the seed README."
    files = sorted(SEEDS.glob('000_*.txt'))
    if not files: pytest.skip(f"the seed README is not here ({SEEDS}); it lives in the project's shared/ folder")
    text = files[0].read_text()
    api = text[text.index('## Python API Usage'):]
    api = api[:api.index('\n## ', 5)]
    return re.findall(r'### ([^\n]+)\n+```python\n(.*?)```', api, re.S)

def test_seed_python_api_runs_as_written():
    blocks = seed_api_blocks()
    assert [h for h, _ in blocks] == ['MaskGiT: Autoencoder', 'MaskGiT: Transformer', 'MAISI: VAE', 'MAISI: Diffusion']
    code = '\n'.join(c for _, c in blocks)
    for old, new in SHRINK.items():
        assert old in code, f"the seed no longer contains {old!r}: update SHRINK"
        code = code.replace(old, new)
    from prod9.diffusion.diffusion_model import build_unet, DiffusionUNetConfig
    torch.manual_seed(0)
    ns = {'torch': torch, 'images': torch.rand(2, 1, 32, 32, 32), 'large_volume': torch.rand(1, 1, 40, 36, 32),
          'condition_embeddings': torch.tensor([0, 3]), 'batch_size': 2,
          'model': build_unet(DiffusionUNetConfig(num_channels=[8, 8], num_res_blocks=1, attention_levels=[False, False],
                                                  num_head_channels=8, norm_num_groups=8), 3, 4, 1)}
    exec(compile(code, 'seed-README-python-api', 'exec'), ns)
    # what the examples computed has the shapes the seed's comments promise
    assert ns['reconstruction'].shape == ns['images'].shape                         # MAISI VAE: encode → reparameterize → decode
    assert ns['reconstructed'].shape[:2] == (1, 1) and ns['indices'].dtype == torch.long
    assert ns['generated_tokens'].shape == (2, 4, 4, 4) and int(ns['generated_tokens'].max()) < 512
    assert ns['generated_images'].shape == (2, 1, 64, 64, 64)                       # 4³ tokens × 16 (fmaps_depth=5)
    assert ns['noisy_latent'].shape == ns['noise'].shape and ns['latent'].shape == ns['noise'].shape
