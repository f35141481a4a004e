"""Shared helpers of prod9's benchmarks: peak memory, medians, machine description, Markdown tables.

Benchmarks report; they are not tests. Timings are medians of repeated runs, and comparisons are ratios
measured in the same process, because these machines are noisy."""
from __future__ import annotations
import os, platform, statistics, threading, time, datetime
from contextlib import contextmanager
import torch

def rss_bytes() -> int:
    "Resident set size of this process (Linux /proc; falls back to ru_maxrss elsewhere)."
    try:
        with open('/proc/self/statm') as f: return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    except OSError:
        import resource; return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

class PeakMemory:
    """Peak memory of a block: CUDA allocator peak on a GPU device, else process RSS sampled every `interval` s.
    `.peak` is the absolute peak, `.delta` the rise over the level at entry (both bytes)."""
    def __init__(self, device='cpu', interval:float=0.002):
        self.device, self.interval = torch.device(device), interval
    def __enter__(self):
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device); torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
        else:
            self.start = self.peak = rss_bytes(); self._stop = threading.Event()
            def sample():
                while not self._stop.is_set():
                    self.peak = max(self.peak, rss_bytes()); time.sleep(self.interval)
            self._t = threading.Thread(target=sample, daemon=True); self._t.start()
        return self
    def __exit__(self, *exc):
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device); self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set(); self._t.join(); self.peak = max(self.peak, rss_bytes())
        self.delta = self.peak - self.start
        return False

def sync(device):
    if torch.device(device).type == 'cuda': torch.cuda.synchronize(device)

def median_time(fn, repeats:int=5, warmup:int=1, device='cpu') -> float:
    "Median wall time of `fn()` in seconds."
    for _ in range(warmup): fn()
    ts = []
    for _ in range(repeats):
        sync(device); t = time.perf_counter(); fn(); sync(device); ts.append(time.perf_counter() - t)
    return statistics.median(ts)

def matmul_peak_flops(n:int=2048, device='cpu', repeats:int=5) -> float:
    "Measured fp32 matmul FLOP/s on this machine now (the reference for utilisation figures)."
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    return 2 * n ** 3 / median_time(lambda: a @ b, repeats, warmup=2, device=device)

def default_device() -> str: return 'cuda' if torch.cuda.is_available() else 'cpu'

def machine_info(device='cpu') -> dict:
    import monai, lightning
    d = {'date': datetime.date.today().isoformat(), 'python': platform.python_version(), 'torch': torch.__version__,
         'monai': monai.__version__, 'lightning': lightning.__version__, 'cpu': platform.processor() or platform.machine(),
         'cpu_threads': torch.get_num_threads(), 'device': str(device)}
    if torch.device(device).type == 'cuda': d['gpu'] = torch.cuda.get_device_name(device)
    return d

def gib(b:float) -> str: return f"{b / 2**30:.2f} GiB"

def markdown_table(rows:list[dict], columns:list[str]|None=None) -> str:
    "Rows of dicts as a GitHub Markdown table."
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
    lines += ['| ' + ' | '.join(fmt(r.get(c, '')) for c in columns) + ' |' for r in rows]
    return '\n'.join(lines)
