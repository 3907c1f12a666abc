"""YAML and ASDF alias bombs are refused in milliseconds, before anything expands them;
ordinary YAML and ASDF references read as before."""

from __future__ import annotations

import time

import asdf
import numpy as np
import pytest
import yaml

from crds_events.files.errors import ReferenceFileError
from crds_events.files.headers import read_header
from crds_events.files.safeyaml import (
    YamlLimitError,
    check_asdf_tree,
    safe_load_limited,
)


def yaml_bomb(depth: int, prefix: str = "") -> str:
    """Ten aliases of ten aliases of ...: 10**depth strings from a few hundred bytes."""
    lines = [f"{prefix}a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, depth + 1):
        lines.append(f"{prefix}a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def asdf_bomb(path, depth: int = 7):
    """A real ASDF file (written by asdf) whose tree is then given the alias bomb."""
    asdf.AsdfFile({"meta": {"instrument": {"name": "NIRCAM"}, "reftype": "FLAT"}}).write_to(path)
    text = path.read_bytes().decode()
    head, _, tail = text.partition("\n...\n")
    head += "\n" + yaml_bomb(depth).rstrip("\n")
    path.write_bytes((head + "\n...\n" + tail).encode())
    assert path.stat().st_size < 2000
    return path


def test_yaml_bomb_is_refused_fast():
    started = time.monotonic()
    with pytest.raises(YamlLimitError, match="expands to more than"):
        safe_load_limited(yaml_bomb(9))
    assert time.monotonic() - started < 5  # was minutes: each level x10


@pytest.mark.parametrize("text, reason", [
    ("a: &a [*a]\n", "recursive"),
    ("[" * 100 + "]" * 100, "nested more than"),
    ("".join(f"k{i}: &k{i} 1\n" for i in range(200)) + "l: [" +
     ", ".join(f"*k{i}" for i in range(200)) + "]\n", "more than 100 YAML aliases"),
])
def test_other_limits(text, reason):
    with pytest.raises(YamlLimitError, match=reason):
        safe_load_limited(text)


def test_no_aliases_when_asked_and_ordinary_yaml_unchanged():
    with pytest.raises(YamlLimitError, match="not allowed"):
        safe_load_limited("a: &a 1\nb: *a\n", max_aliases=0)
    text = "a: &a {x: 1}\nb: *a\nc: [1, 2.5, 2024-01-01, null, true]\n"
    assert safe_load_limited(text) == yaml.safe_load(text)
    assert isinstance(YamlLimitError("x"), yaml.YAMLError)


def test_yaml_reference_bomb_is_a_clear_reference_error(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text("meta:\n  instrument: {name: NIRCAM}\n" + yaml_bomb(8))
    started = time.monotonic()
    with pytest.raises(ReferenceFileError, match="expands to more than"):
        read_header(path)
    assert time.monotonic() - started < 5


def test_asdf_bomb_is_refused_before_asdf_parses_it(tmp_path):
    path = asdf_bomb(tmp_path / "bomb.asdf", depth=8)
    started = time.monotonic()
    with pytest.raises(YamlLimitError):
        check_asdf_tree(path)
    with pytest.raises(ReferenceFileError, match="expands to more than"):
        read_header(path)
    assert time.monotonic() - started < 5


def test_ordinary_asdf_still_reads(tmp_path):
    path = tmp_path / "ok.asdf"
    asdf.AsdfFile({"meta": {"instrument": {"name": "NIRCAM"}, "reftype": "FLAT"},
                   "data": np.zeros((64, 64), dtype=np.float32)}).write_to(path)
    check_asdf_tree(path)
    header = read_header(path)
    assert header["META.INSTRUMENT.NAME"] == "NIRCAM"
