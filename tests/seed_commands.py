"""The command lines of the seed documents (shared/seeds), as written: extracted from their fenced shell blocks."""
import os, re
from pathlib import Path

# the guides live in the project's shared/ folder beside the checkout (CI has it); a user's clone has none, and PROD9_SEEDS_DIR moves it
SEEDS = Path(os.environ.get('PROD9_SEEDS_DIR') or Path(__file__).resolve().parent.parent.parent / 'shared' / 'seeds')

def seed_blocks(path) -> list[tuple[str, str]]:
    "(language, text) of every fenced block of a seed file."
    out, lang, buf = [], None, []
    for line in Path(path).read_text().splitlines():
        s = line.strip()
        if s.startswith('```'):
            if lang is None: lang, buf = s[3:].strip() or 'text', []
            else: out.append((lang, '\n'.join(buf))); lang = None
        elif lang is not None: buf.append(line)
    return out

def seed_commands(path) -> list[str]:
    "Every `prod9-*` command line of the seed's shell blocks (continuations joined, trailing comments dropped), in order, without repeats."
    cmds = []
    for lang, text in seed_blocks(path):
        if lang not in ('bash', 'sh', 'text'): continue
        for line in re.sub(r"\\\n\s*", " ", text).splitlines():
            line = line.strip()
            if line.startswith('prod9-'):
                c = ' '.join(line.split(' #')[0].split())
                if c not in cmds: cmds.append(c)
    return cmds

def seed_file(prefix:str) -> Path:
    "The guide numbered `prefix`; the calling test is skipped, and says why, where the guides are not beside this checkout."
    found = sorted(SEEDS.glob(f'{prefix}_*.txt'))
    if not found:
        import pytest
        pytest.skip(f"the original guides are not at {SEEDS} (a user's clone has no ../shared; CI has it)")
    return found[0]
