"""Architectures behind one contract (see base.py); ARCHS maps a name to (config, model)."""


from ..config import ARCH_NAMES, from_dict
from ..errors import SeqlabError
from .base import SeqModel, map_state
from .conv import Conv, ConvConfig
from .lstm import LSTM, LSTMConfig
from .qrnn import QRNN, QRNNConfig
from .stack import StackConfig, StackRNN
from .transformer import Transformer, TransformerConfig

ARCHS: dict[str, tuple[type, type]] = {
    "transformer": (TransformerConfig, Transformer),
    "lstm": (LSTMConfig, LSTM),
    "qrnn": (QRNNConfig, QRNN),
    "conv": (ConvConfig, Conv),
    "stack": (StackConfig, StackRNN),
}
assert tuple(ARCHS) == ARCH_NAMES, "name a new architecture in config.ARCH_NAMES too (RunConfig.arch accepts those)"


def arch_entry(arch: str) -> tuple[type, type]:
    if arch not in ARCHS:
        raise SeqlabError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHS)}")
    return ARCHS[arch]


def model_config(arch: str, values: dict):
    config_cls, _ = arch_entry(arch)
    return from_dict(config_cls, values, where=".model")


def build_model(arch: str, values: dict) -> SeqModel:
    config = model_config(arch, values)
    _, model_cls = arch_entry(arch)
    return model_cls(config)



__all__ = ["ARCHS", "SeqModel", "map_state", "build_model", "model_config", "arch_entry"]
