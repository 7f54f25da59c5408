"""What makes a training step fast on the machine at hand, without changing what it learns.

- **bf16 autocast** where the device computes bf16 natively: CUDA GPUs that support it, and CPUs
  with AVX512-BF16 or AMX (`train.precision=auto`), for the architectures measured (the transformer
  and the LSTM; the others keep fp32 unless `train.precision=bf16`). The weights, the optimizer and the loss stay
  fp32; matrix products run in bf16, which on an AVX512-BF16 CPU is about twice as fast as fp32.
  Attention stays fp32 on the CPU (models/transformer.py): PyTorch's bf16 attention backward is
  several times slower there. Measured side by side on this project's shared 2-core VM, one
  thread (docs/quality.md, bench/train_speed.py; provisional): the default 4x128 transformer and
  the LSTM train about 1.5x faster; `--learn` there checks the held-out bits at equal steps.
- **A fused AdamW** (one kernel for every parameter's update): a few per cent, free.
- **torch.compile** (`train.compile=true`, opt-in): inductor fuses the element-wise work around
  the matrix products (GELU, layer norms, residual adds). On the CPU its compilation takes a
  minute or more of the budget, so it can pay only for budgets of hours (bench/train_speed.py
  --compile measures it).
  If compiling fails (no C++ compiler, an unsupported op), the run says so in one line and goes
  on eagerly from the same step.
"""

import torch

from ..errors import SeqlabError

PRECISIONS = ("auto", "fp32", "bf16")
BF16_MEASURED = ("transformer", "lstm")  # auto takes bf16 for these: measured faster, learning the same


def native_bf16(device: torch.device) -> bool:
    """Whether `device` multiplies bf16 matrices natively (faster than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":  # torch's own checks (what its oneDNN kernels dispatch on); private, so guarded
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return False


def uses_bf16(device: torch.device, precision: str, arch: str) -> bool:
    """Whether training `arch` on `device` with train.precision=`precision` runs under bf16 autocast."""
    if precision not in PRECISIONS:
        raise SeqlabError(f"train.precision={precision!r} is not known; choose one of: {', '.join(PRECISIONS)} "
                          f"(auto: bf16 where the device computes it natively)")
    return precision == "bf16" or (precision == "auto" and arch in BF16_MEASURED and native_bf16(device))


def autocast(device: torch.device, bf16: bool):
    """The context a training forward pass runs in."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def fused_adamw_supported(device: torch.device) -> bool:
    return device.type in ("cpu", "cuda")


class CompiledStep:
    """Runs `fn(net, *args)` with a torch.compile'd net, or the eager one once compiling has failed.

    Compilation happens at the first calls (inductor compiles the backward at the first backward),
    so fn should hold the forward and the backward pass; when either fails, the gradients are
    cleared and the step is redone eagerly, and every later step is eager.
    """

    def __init__(self, net, enabled: bool, clear_grads, log=print):
        self.eager, self.clear_grads, self.log = net, clear_grads, log
        self.compiled = torch.compile(net) if enabled else None

    def __call__(self, fn, *args):
        if self.compiled is None:
            return fn(self.eager, *args)
        try:
            return fn(self.compiled, *args)
        except Exception as e:  # noqa: BLE001 - any compiler failure; a real bug fails again eagerly below
            first_line = (str(e).strip().splitlines() or [""])[0][:200]
            self.log(f"torch.compile failed ({type(e).__name__}: {first_line}); training goes on without it")
            self.compiled = None
            self.clear_grads()
            return fn(self.eager, *args)
