#!/usr/bin/env python3
"""Side-by-side timing of fastctc against PyTorch's, optax's and warp-ctc's CTC loss on the standard shapes.

Not run in CI. It creates (or reuses) a virtual environment OUTSIDE the repository, installs torch
and optax/jax from PyPI into it, builds and runs fastctc's `bench` example, times the
peers on the same shapes (loss + gradient w.r.t. logits, f32, sum reduction, median over rounds),
and prints one table of milliseconds and ratios (each peer's time over fastctc's, and the fastest
peer's over fastctc's).

Usage: python3 scripts/compare_peers.py [--venv /work/venv-speed] [--rounds 10] [--threads 2]
           [--shapes tiny,chars,...] [--warp-ctc-src DIR [--warp-ctc-build /work/warp-ctc-build]
           [--warp-ctc-cxxflags "-O2 ..."]]

warp-ctc (Baidu's CPU build, OpenMP) is timed only when `--warp-ctc-src` names an extracted copy of its
source tree (e.g. `git archive` of github.com/baidu-research/warp-ctc, kept OUTSIDE this repository);
without it its column reads n/a. The script compiles `src/ctc_entrypoint.cpp` with g++ into a shared
library in `--warp-ctc-build` (rebuilt only when the sources or flags change), checks the ctypes
binding once against PyTorch's ctc_loss on a small ragged batch (costs and gradients; it stops if they
disagree), then times `compute_ctc_loss` with `num_threads = --threads` in a process of its own.

The peers get the same batches in shape and distribution (standard-normal logits, labels uniform
over 1..V-1, blank 0), not bit-identical values: timing does not depend on the values.
"""

import argparse
import os
import re
import shlex
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

# The flags of warp-ctc's own CPU-only build on Linux (its CMakeLists.txt: `-O2`, `-fopenmp` with
# WITH_OMP on by default, CMAKE_CXX_STANDARD 11 with CMake's default GNU extensions, no -march):
# the library as its users get it. `--warp-ctc-cxxflags` replaces them (e.g. "-O3 -march=native").
WARP_CTC_CXXFLAGS = "-O2 -fopenmp -std=gnu++11"


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


def fastctc_times(rounds, threads, names):
    """Median ms per shape from the bench example, default backend (`auto`)."""
    subprocess.check_call(["cargo", "build", "--release", "--example", "bench"], cwd=REPO)
    exe = os.path.join(REPO, "target", "release", "examples", "bench")
    # The example takes one shape or all of them: a subset is run shape by shape.
    selections = ["all"] if len(names) == len(SHAPES) else names
    times = {}
    for sel in selections:
        out = subprocess.check_output([exe, str(rounds), sel, "auto", str(threads)], cwd=REPO, text=True)
        for line in out.splitlines():
            m = re.match(r"(\w+)\s+Auto\s+\d+\s+([\d.]+)", line)
            if m:
                times[m.group(1)] = float(m.group(2))
    return times


def build_warp_ctc(src, build, cxxflags):
    """Compiles warp-ctc's CPU library from `src` into `build`; returns the path of the .so."""
    entry = os.path.join(src, "src", "ctc_entrypoint.cpp")
    include = os.path.join(src, "include")
    if not os.path.isfile(entry) or not os.path.isfile(os.path.join(include, "ctc.h")):
        sys.exit(f"--warp-ctc-src {src}: no src/ctc_entrypoint.cpp and include/ctc.h there")
    os.makedirs(build, exist_ok=True)
    lib = os.path.join(build, "libwarpctc.so")
    stamp = lib + ".flags"
    # No CUDA define is needed: ctc_entrypoint.cpp includes the GPU code only under __CUDACC__/__HIPCC__.
    cmd = ["g++", *shlex.split(cxxflags), "-shared", "-fPIC", "-I", include, entry]
    sources = [entry] + [
        os.path.join(d, f) for d, _, fs in os.walk(os.path.join(include, "detail")) for f in fs
    ] + [os.path.join(include, "ctc.h")]
    fresh = (
        os.path.exists(lib)
        and os.path.exists(stamp)
        and open(stamp).read() == shlex.join(cmd)
        and all(os.path.getmtime(s) <= os.path.getmtime(lib) for s in sources)
    )
    if not fresh:
        # Written under a temporary name and renamed, so that an interrupted build never leaves a
        # truncated library for the next run to load.
        tmp = f"{lib}.tmp{os.getpid()}"
        try:
            subprocess.check_call(cmd + ["-o", tmp])
            os.replace(tmp, lib)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        with open(stamp + ".tmp", "w") as f:
            f.write(shlex.join(cmd))
        os.replace(stamp + ".tmp", stamp)
    print(f"warp-ctc: {lib} ({'reused' if fresh else 'built'}): {shlex.join(cmd)}", flush=True)
    return lib


# ctypes binding of include/ctc.h, shared by the check and the timing scripts below (both run in the
# venv). `ctcOptions` is {int loc; union {unsigned num_threads; CUstream stream;}; int blank_label},
# passed by value: the union is pointer-sized, so the struct is 24 bytes on x86-64, not 12.
# The per-sequence lengths of a shape, shared by the peers' scripts (prepended to each: they run in
# processes of their own). `ragged` (t is None) draws them in its ranges.
LENGTHS = r"""
import random
def lengths(b, t, l):
    if t is None:
        r = random.Random(0x5eed)
        return [r.randint(200, 400) for _ in range(b)], [r.randint(40, 80) for _ in range(b)]
    return [t] * b, [l] * b
"""

WARP_BINDING = r"""
import ctypes, numpy as np

class _ThreadsOrStream(ctypes.Union):
    _fields_ = [("num_threads", ctypes.c_uint), ("stream", ctypes.c_void_p)]

class CtcOptions(ctypes.Structure):
    _anonymous_ = ("u",)
    _fields_ = [("loc", ctypes.c_int), ("u", _ThreadsOrStream), ("blank_label", ctypes.c_int)]

CTC_CPU = 0
_fp, _ip = ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_int)

def load(path):
    lib = ctypes.CDLL(path)
    lib.get_workspace_size.argtypes = [_ip, _ip, ctypes.c_int, ctypes.c_int, CtcOptions,
                                       ctypes.POINTER(ctypes.c_size_t)]
    lib.get_workspace_size.restype = ctypes.c_int
    lib.compute_ctc_loss.argtypes = [_fp, _fp, _ip, _ip, _ip, ctypes.c_int, ctypes.c_int, _fp,
                                     ctypes.c_void_p, CtcOptions]
    lib.compute_ctc_loss.restype = ctypes.c_int
    lib.ctcGetStatusString.argtypes = [ctypes.c_int]
    lib.ctcGetStatusString.restype = ctypes.c_char_p
    return lib

class WarpCtc:
    # All buffers, the workspace included, are made here once, so that a call to run() times
    # compute_ctc_loss alone (as the other peers are timed without their allocations).
    def __init__(self, lib, logits, labels, label_lengths, input_lengths, threads):
        t, b, v = logits.shape
        self.lib, self.b, self.v = lib, b, v
        self.acts = np.ascontiguousarray(logits, dtype=np.float32)  # (T, B, V), unnormalised
        self.grads = np.zeros_like(self.acts)
        self.costs = np.zeros(b, dtype=np.float32)
        # Concatenated labels: the first L_b of row b of the padded (B, Lmax) matrix.
        self.flat = np.ascontiguousarray(
            np.concatenate([labels[i, :label_lengths[i]] for i in range(b)]), dtype=np.int32)
        self.ll = np.ascontiguousarray(label_lengths, dtype=np.int32)
        self.il = np.ascontiguousarray(input_lengths, dtype=np.int32)
        self.opts = CtcOptions(loc=CTC_CPU, num_threads=threads, blank_label=0)
        size = ctypes.c_size_t()
        self._ok(lib.get_workspace_size(self._p(self.ll, _ip), self._p(self.il, _ip), v, b, self.opts,
                                        ctypes.byref(size)))
        self.ws = np.empty(size.value, dtype=np.uint8)
        self.args = (self._p(self.acts, _fp), self._p(self.grads, _fp), self._p(self.flat, _ip),
                     self._p(self.ll, _ip), self._p(self.il, _ip), v, b, self._p(self.costs, _fp),
                     self.ws.ctypes.data_as(ctypes.c_void_p), self.opts)

    @staticmethod
    def _p(a, ty):
        return a.ctypes.data_as(ty)

    def _ok(self, status):
        if status != 0:
            raise RuntimeError("warp-ctc: " + self.lib.ctcGetStatusString(status).decode())

    def run(self):
        self._ok(self.lib.compute_ctc_loss(*self.args))
"""

# Runs inside the venv, with torch: checks costs and gradients of the binding on a small ragged batch
# (lengths that differ, a repeated label, so that padding, offsets into the flat labels and the
# repeat rule are all exercised) against PyTorch's ctc_loss in f64. Exits non-zero on disagreement.
WARP_CHECK_SCRIPT = WARP_BINDING + r"""
import sys, torch
lib = load(sys.argv[1])
rng = np.random.default_rng(7)
b, v = 4, 29
ts, ls = [30, 25, 30, 18], [8, 5, 1, 6]
logits = rng.standard_normal((max(ts), b, v)).astype(np.float32)
labels = rng.integers(1, v, size=(b, max(ls)))
labels[0, 3] = labels[0, 2]
w = WarpCtc(lib, logits, labels, ls, ts, threads=2)
w.run()
x = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
per_seq = torch.nn.functional.ctc_loss(torch.log_softmax(x, dim=2), torch.tensor(labels),
                                       torch.tensor(ts), torch.tensor(ls), blank=0, reduction="none",
                                       zero_infinity=False)
per_seq.sum().backward()
ref_cost, ref_grad = per_seq.detach().numpy(), x.grad.numpy()
cost_rel = float(np.max(np.abs(w.costs - ref_cost) / np.abs(ref_cost)))
# warp-ctc leaves the gradient of padded frames (t >= T_b) unwritten; compare the valid frames only.
grad_abs = max(float(np.max(np.abs(w.grads[:ts[i], i] - ref_grad[:ts[i], i]))) for i in range(b))
print(f"warp-ctc check against torch f64 (B=4, T={ts}, L={ls}, V=29): costs {w.costs.tolist()}, "
      f"max relative cost error {cost_rel:.2e}, max absolute gradient error {grad_abs:.2e}", flush=True)
sys.exit(0 if cost_rel < 1e-4 and grad_abs < 1e-4 else 1)
"""

# Runs inside the venv WITHOUT torch or jax: warp-ctc's OpenMP runtime (the system libgomp) then has
# the process to itself, with no second runtime's idle threads spinning beside it. Prints
# "name ms" per shape. OpenMP's wait policy is left at libgomp's default (idle threads spin a while
# before they sleep), as warp-ctc's users get it: on a machine busy with other work that spinning
# costs warp-ctc time, and OMP_WAIT_POLICY=passive in the environment (inherited here) shows how much.
WARP_TIME_SCRIPT = WARP_BINDING + LENGTHS + r"""
import sys, time, random
lib = load(sys.argv[1])
rounds, threads = int(sys.argv[2]), int(sys.argv[3])
shapes = SHAPES
rng = np.random.default_rng(1)
for name, b, t, l, v in shapes:
    ts, ls = lengths(b, t, l)
    logits = rng.standard_normal((max(ts), b, v)).astype(np.float32)
    labels = rng.integers(1, v, size=(b, max(ls)))
    w = WarpCtc(lib, logits, labels, ls, ts, threads)
    w.run()  # warm-up, excluded (first touch of the workspace pages, OpenMP's thread start)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter(); w.run(); times.append(time.perf_counter() - t0)
    print(name, 1e3 * sorted(times)[len(times) // 2], flush=True)
"""


def warp_ctc_times(py, lib, rounds, threads, shapes):
    """Median ms per shape of warp-ctc's compute_ctc_loss, after the binding check."""
    check = subprocess.run([py, "-c", WARP_CHECK_SCRIPT, lib])
    if check.returncode != 0:
        sys.exit("warp-ctc disagrees with PyTorch (or failed): the binding is wrong, no timing")
    script = WARP_TIME_SCRIPT.replace("shapes = SHAPES", "shapes = " + repr(shapes))
    out = subprocess.check_output([py, "-c", script, lib, str(rounds), str(threads)], text=True)
    return {name: float(ms) for name, ms in (line.split() for line in out.splitlines())}


# Runs inside the venv: times torch and optax on every shape and prints "name torch_ms optax_ms".
PEER_SCRIPT = LENGTHS + r"""
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
    ts, ls = lengths(b, t, l)
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
    ap.add_argument("--shapes", default="all", help="comma-separated subset of the standard shapes")
    ap.add_argument("--warp-ctc-src", default=None, help="warp-ctc source tree; without it, no warp-ctc")
    ap.add_argument("--warp-ctc-build", default="/work/warp-ctc-build")
    ap.add_argument("--warp-ctc-cxxflags", default=WARP_CTC_CXXFLAGS)
    a = ap.parse_args()
    if a.shapes == "all":
        shapes = SHAPES
    else:
        known = {s[0]: s for s in SHAPES}
        wanted = a.shapes.split(",")
        unknown = [n for n in wanted if n not in known]
        if unknown:
            sys.exit(f"--shapes: unknown {unknown}; the shapes are {list(known)}")
        shapes = [s for s in SHAPES if s[0] in wanted]
    names = [s[0] for s in shapes]
    py = ensure_venv(a.venv)
    # Built and checked before any timing, so that a broken warp-ctc fails in seconds, not minutes.
    warp_lib = build_warp_ctc(a.warp_ctc_src, a.warp_ctc_build, a.warp_ctc_cxxflags) if a.warp_ctc_src else None
    ours = fastctc_times(a.rounds, a.threads, names)
    script = PEER_SCRIPT.replace("shapes = SHAPES", "shapes = " + repr(shapes))
    out = subprocess.check_output([py, "-c", script, str(a.rounds), str(a.threads)], text=True)
    warp = warp_ctc_times(py, warp_lib, a.rounds, a.threads, shapes) if warp_lib else {}
    print(
        f"{'shape':<11} {'fastctc ms':>11} {'torch ms':>9} {'optax ms':>9} {'warp-ctc ms':>12}"
        f" {'vs torch':>9} {'vs optax':>9} {'vs warp-ctc':>12} {'vs fastest':>11}"
    )
    for line in out.splitlines():
        name, tt, to = line.split()
        tt, to = float(tt), float(to)
        f = ours.get(name, float("nan"))
        tw = warp.get(name)
        # "vs fastest" is the fastest peer measured on this run (warp-ctc only when it was built).
        fastest = min(x for x in (tt, to, tw) if x is not None)
        w_ms = f"{tw:>12.3f}" if tw is not None else f"{'n/a':>12}"
        w_ratio = f"{tw / f:>11.1f}x" if tw is not None else f"{'n/a':>12}"
        print(
            f"{name:<11} {f:>11.3f} {tt:>9.3f} {to:>9.3f} {w_ms}"
            f" {tt / f:>8.1f}x {to / f:>8.1f}x {w_ratio} {fastest / f:>10.1f}x"
        )


if __name__ == "__main__":
    sys.exit(main())
