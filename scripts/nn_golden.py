"""Golden fixtures for tests/nn_golden.rs: PyTorch (float64) outputs and gradients of a bidirectional
GRU over a ragged batch (packed sequences, so each sequence runs over its own valid frames) and of a
strided 1-D convolution applied to each sequence alone.

Run: python scripts/nn_golden.py  (needs torch; writes tests/nn_fixtures/golden.json)
The loss is sum(w * y) over valid output frames, so the fixture's gradients are those of that loss.
"""
import json
import os

import torch

torch.manual_seed(1234)
torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "nn_fixtures", "golden.json")


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def gru_case():
    B, T, I, H = 3, 6, 4, 5
    lengths = [6, 3, 5]
    gru = torch.nn.GRU(I, H, batch_first=True, bidirectional=True)
    x = torch.randn(B, T, I)
    for b, l in enumerate(lengths):
        x[b, l:] = 0.0
    x.requires_grad_(True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    y, _ = gru(packed)
    y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=T)
    w = torch.randn(B, T, 2 * H)
    mask = torch.zeros(B, T, 1)
    for b, l in enumerate(lengths):
        mask[b, :l] = 1.0
    (y * w * mask).sum().backward()
    names = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    names += [n + "_reverse" for n in names]
    params = {n: flat(getattr(gru, n)) for n in names}
    grads = {n: flat(getattr(gru, n).grad) for n in names}
    return {
        "batch": B, "time": T, "input": I, "hidden": H, "lengths": lengths,
        "x": flat(x), "w": flat(w), "y": flat(y), "dx": flat(x.grad), "params": params, "grads": grads,
    }


def conv_case():
    B, T, C, O, K, S, P = 3, 9, 3, 4, 3, 2, 1
    lengths = [9, 4, 1]
    conv = torch.nn.Conv1d(C, O, K, stride=S, padding=P)
    x = torch.randn(B, T, C, requires_grad=True)
    t_out = (T + 2 * P - (K - 1) - 1) // S + 1
    y = torch.zeros(B, t_out, O)
    w = torch.randn(B, t_out, O)
    loss = 0.0
    lengths_out = []
    for b, l in enumerate(lengths):
        yb = conv(x[b, :l].t().unsqueeze(0))[0].t()  # (l_out, O), the sequence alone
        lengths_out.append(yb.shape[0])
        y[b, : yb.shape[0]] = yb.detach()
        loss = loss + (yb * w[b, : yb.shape[0]]).sum()
    loss.backward()
    return {
        "batch": B, "time": T, "in_channels": C, "out_channels": O, "kernel": K, "stride": S, "padding": P,
        "lengths": lengths, "lengths_out": lengths_out, "time_out": t_out,
        "x": flat(x), "w": flat(w), "y": flat(y), "dx": flat(x.grad),
        "params": {"weight": flat(conv.weight), "bias": flat(conv.bias)},
        "grads": {"weight": flat(conv.weight.grad), "bias": flat(conv.bias.grad)},
    }


with open(OUT + ".tmp", "w") as f:
    json.dump({"torch": torch.__version__, "gru": gru_case(), "conv": conv_case()}, f)
os.replace(OUT + ".tmp", OUT)
print("wrote", OUT)
