"""Architectures: registry plus the networks of the seed papers (imported to register them)."""

from benchmark.archs import cifar_resnet, digits, preact_resnet, pyramidnet, wide_resnet
from benchmark.archs.registry import build_arch, list_archs, register_arch

__all__ = ["build_arch", "cifar_resnet", "digits", "list_archs", "preact_resnet", "pyramidnet",
           "register_arch", "wide_resnet"]
