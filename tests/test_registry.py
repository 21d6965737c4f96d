"""The one registry mechanism: registration, lookup with hints, wildcard listing across kinds."""

from __future__ import annotations

import pytest

import benchmark.tasks  # noqa: F401  (registers the built-in entries)
import corruptions.generate  # noqa: F401
from benchmark.cli import main
from benchmark.registry import KINDS, Registry, UnknownName, find, registry
from corruptions.catalog import ALL


def test_register_get_and_refuse_a_second_registration():
    reg: Registry[int] = Registry("thing")
    reg.add("alpha", 1, "the first", colour="red")
    assert reg.get("alpha") == 1 and "alpha" in reg
    assert reg.entry("alpha").info == {"colour": "red"}
    with pytest.raises(ValueError, match="thing 'alpha' is registered twice"):
        reg.add("alpha", 2)
    with pytest.raises(UnknownName, match="did you mean 'alpha'"):
        reg.get("Alpha")
    with pytest.raises(UnknownName, match="unknown thing 'zzz'; known: alpha"):
        reg.get("zzz")


def test_every_extension_kind_has_its_builtin_entries():
    expected = {"task": {"clean", "pgd", "ood"}, "arch": {"digits_cnn", "cifar_resnet18"},
                "attack": {"fgsm", "pgd", "cw"}, "corruption": {"snow", "gaussian_noise"},
                "scorer": {"msp", "energy", "odin"},
                "metric": {"ood/detection", "calibration/errors", "clean/topk_err"}}
    assert set(expected) == set(KINDS)
    for kind, names in expected.items():
        assert names <= set(registry(kind).names())
    assert all(registry("corruption").entry(name).info["released"] for name in ALL)


def test_wildcards_select_across_kinds(capsys):
    found = find("p*")
    assert [e.name for e in found["task"]] == ["pgd"]
    assert [e.name for e in found["attack"]] == ["pgd"]
    assert [e.name for e in found["corruption"]] == ["pixelate"]
    assert main(["list", "apgd*"]) == 0
    out = capsys.readouterr().out
    assert "attacks: -" in out and "tasks: -" in out
    assert main(["list", "*_blur"]) == 0
    out = capsys.readouterr().out
    assert "motion_blur" in out and "category=blur, released=True" in out
