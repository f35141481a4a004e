"""Checkpoints are written atomically: a save that is killed or fails never replaces a good checkpoint."""
import os, signal, subprocess, sys, time, textwrap
import pytest, torch
from prod9.training.engine import AtomicCheckpointIO

WRITER = textwrap.dedent("""
    import sys, torch
    from prod9.training.engine import AtomicCheckpointIO
    io, path = AtomicCheckpointIO(), sys.argv[1]
    big = torch.zeros(48 * 2**20 // 4)            # 48 MiB: a save takes long enough to be interrupted
    for version in range(1, 10_000):
        io.save_checkpoint({'version': version, 'state_dict': {'w': big + version}}, path)
        print(version, flush=True)
""")

def test_sigkill_during_save_keeps_previous_checkpoint(tmp_path):
    ckpt = tmp_path / 'last.ckpt'
    p = subprocess.Popen([sys.executable, '-c', WRITER, str(ckpt)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == '1'            # one complete checkpoint exists
        deadline = time.time() + 60
        while not list(tmp_path.glob('.last.ckpt.*.tmp')):  # wait until the next save is half-way
            assert time.time() < deadline and p.poll() is None, "writer never started a second save"
            time.sleep(0.001)
        p.send_signal(signal.SIGKILL); p.wait(30)
    finally:
        if p.poll() is None: p.kill()
    ck = torch.load(ckpt, weights_only=True)                  # still a complete, loadable checkpoint
    v = ck['version']
    assert v >= 1 and torch.equal(ck['state_dict']['w'][:3], torch.full((3,), float(v)))
    assert ck['state_dict']['w'].numel() == 48 * 2**20 // 4

def test_failed_save_leaves_no_partial_file(tmp_path, monkeypatch):
    io, ckpt = AtomicCheckpointIO(), tmp_path / 'best.ckpt'
    io.save_checkpoint({'version': 1}, ckpt)
    def broken_save(obj, f, *a, **k):
        with open(f, 'wb') as fh: fh.write(b'PK\x03\x04 half a zip')
        raise OSError("No space left on device")
    monkeypatch.setattr(torch, 'save', broken_save)
    with pytest.raises(OSError, match='No space left'): io.save_checkpoint({'version': 2}, ckpt)
    monkeypatch.undo()
    assert torch.load(ckpt, weights_only=True) == {'version': 1}
    assert sorted(x.name for x in tmp_path.iterdir()) == ['best.ckpt']

def test_stale_temporary_files_are_cleaned(tmp_path):
    "A temp file left by a killed save (its process is gone) is removed by the next save of the same checkpoint; a live process's is kept."
    from prod9.io import _HOST
    gone = subprocess.Popen([sys.executable, '-c', 'pass']); gone.wait()
    (tmp_path / f'.last.ckpt.prod9-{gone.pid}@{_HOST}.abc123.tmp').write_bytes(b'partial')
    live = tmp_path / f'.last.ckpt.prod9-{os.getppid()}@{_HOST}.def456.tmp'; live.write_bytes(b'in progress')
    AtomicCheckpointIO().save_checkpoint({'version': 3}, tmp_path / 'last.ckpt')
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted(['last.ckpt', live.name])

def test_concurrent_writers_do_not_delete_each_others_saves(tmp_path):
    "Two processes saving the same checkpoint (issue: one deleted the other's temporary file mid-save): both finish every save."
    writer = WRITER.replace('48 * 2**20', '4 * 2**20').replace('range(1, 10_000)', 'range(1, 41)')
    procs = [subprocess.Popen([sys.executable, '-c', writer, str(tmp_path / 'last.ckpt')], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert all(o[0].split()[-1] == '40' for o in outs)
    assert torch.load(tmp_path / 'last.ckpt', weights_only=True)['version'] == 40
    assert sorted(x.name for x in tmp_path.iterdir()) == ['last.ckpt']
