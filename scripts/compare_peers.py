#!/usr/bin/env python3
"""Side-by-side timing of fastctc against PyTorch's and optax's CTC loss on the standard shapes.

Not run in CI. It creates (or reuses) a virtual environment OUTSIDE the repository, installs torch
and optax/jax from PyPI into it, builds and runs fastctc's `bench` example, times the
peers on the same shapes (loss + gradient w.r.t. logits, f32, sum reduction, median over rounds),
and prints one table of milliseconds and ratios.

Usage: python3 scripts/compare_peers.py [--venv /work/venv-speed] [--rounds 10] [--threads 2]

The peers get the same batches in shape and distribution (standard-normal logits, labels uniform
over 1..V-1, blank 0), not bit-identical values: timing does not depend on the values.
"""

import argparse
import os
import re
import subprocess
import sys
import venv

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Must match src/loss/shapes.rs (the ragged lengths are drawn there with a seeded generator; here
# only their ranges matter for timing, so they are drawn again with Python's).
SHAPES = [
    ("tiny", 256, 50, 10, 29),
    ("chars", 32, 150, 40, 29),
    ("chars_long", 16, 1000, 200, 29),
    ("bpe", 16, 250, 60, 1024),
    ("bpe_large", 8, 500, 100, 5000),
    ("ragged", 32, None, None, 29),
]


def ensure_venv(path):
    py = os.path.join(path, "bin", "python")
    if not os.path.exists(py):
        venv.create(path, with_pip=True)
    have = subprocess.run([py, "-c", "import torch, optax, jax"], capture_output=True).returncode == 0
    if not have:
        subprocess.check_call([py, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
        # PyPI only (the project's rule for fixtures and comparisons).
        subprocess.check_call([py, "-m", "pip", "install", "--quiet", "torch", "jax", "optax", "numpy"])
    return py


def fastctc_times(rounds, threads):
    """Median ms per shape from the bench example, default backend (`auto`)."""
    subprocess.check_call(["cargo", "build", "--release", "--example", "bench"], cwd=REPO)
    exe = os.path.join(REPO, "target", "release", "examples", "bench")
    out = subprocess.check_output([exe, str(rounds), "all", "auto", str(threads)], cwd=REPO, text=True)
    times = {}
    for line in out.splitlines():
        m = re.match(r"(\w+)\s+Auto\s+\d+\s+([\d.]+)", line)
        if m:
            times[m.group(1)] = float(m.group(2))
    return times


# Runs inside the venv: times torch and optax on every shape and prints "name torch_ms optax_ms".
PEER_SCRIPT = r"""
import os, sys, time, random
rounds, threads = int(sys.argv[1]), int(sys.argv[2])
os.environ["XLA_FLAGS"] = f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={threads}"
import numpy as np, torch, jax, jax.numpy as jnp, optax
torch.set_num_threads(threads)
shapes = SHAPES
rng = np.random.default_rng(1)
def median(f):
    f()
    ts = []
    for _ in range(rounds):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return 1e3 * sorted(ts)[len(ts) // 2]
for name, b, t, l, v in shapes:
    if t is None:
        r = random.Random(0x5eed)
        ts = [r.randint(200, 400) for _ in range(b)]; ls = [r.randint(40, 80) for _ in range(b)]
    else:
        ts, ls = [t] * b, [l] * b
    tmax, lmax = max(ts), max(ls)
    logits = rng.standard_normal((tmax, b, v)).astype(np.float32)
    labels = rng.integers(1, v, size=(b, lmax)).astype(np.int64)
    x = torch.tensor(logits, requires_grad=True)
    tl, il = torch.tensor(ls), torch.tensor(ts)
    y = torch.tensor(labels)
    def run_torch():
        x.grad = None
        lp = torch.log_softmax(x, dim=2)
        torch.nn.functional.ctc_loss(lp, y, il, tl, blank=0, reduction="sum").backward()
    tt = median(run_torch)
    lj = jnp.asarray(logits.transpose(1, 0, 2))
    lpad = jnp.asarray((np.arange(tmax)[None, :] >= np.array(ts)[:, None]).astype(np.float32))
    ypad = jnp.asarray((np.arange(lmax)[None, :] >= np.array(ls)[:, None]).astype(np.float32))
    yj = jnp.asarray(labels)
    f = jax.jit(jax.value_and_grad(lambda z: optax.ctc_loss(z, lpad, yj, ypad, blank_id=0).sum()))
    def run_optax():
        jax.block_until_ready(f(lj))
    to = median(run_optax)
    print(name, tt, to, flush=True)
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", default="/work/venv-speed")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    py = ensure_venv(a.venv)
    ours = fastctc_times(a.rounds, a.threads)
    script = PEER_SCRIPT.replace("shapes = SHAPES", "shapes = " + repr(SHAPES))
    out = subprocess.check_output([py, "-c", script, str(a.rounds), str(a.threads)], text=True)
    print(f"{'shape':<11} {'fastctc ms':>11} {'torch ms':>9} {'optax ms':>9} {'vs torch':>9} {'vs optax':>9}")
    for line in out.splitlines():
        name, tt, to = line.split()
        tt, to = float(tt), float(to)
        f = ours.get(name, float("nan"))
        print(f"{name:<11} {f:>11.3f} {tt:>9.3f} {to:>9.3f} {tt / f:>8.1f}x {to / f:>8.1f}x")


if __name__ == "__main__":
    sys.exit(main())
