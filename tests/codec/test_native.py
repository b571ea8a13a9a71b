"""The compiled codec (proxy.codec.native) against the Python code it was compiled from.

Every other codec test runs on whichever of the two ``proxy.codec.packstream`` hands out (the
compiled one wherever ``.ci/bootstrap`` ran); these compare the two on generated values and
generated hostile bytes, so the Python code stays proven where a machine cannot compile it.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.codec import native, packstream
from tests.codec.test_packstream import values

EXAMPLES = settings(max_examples=400, derandomize=True, deadline=None, database=None)
needs_build = pytest.mark.skipif(
    native.built("packstream") is None, reason="the codec is not compiled on this machine"
)


@pytest.fixture(scope="module")
def python_codec() -> ModuleType:
    """``proxy/codec/packstream.py`` loaded afresh with the compiled twin turned off."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(native.DISABLE, "0")
        spec = importlib.util.spec_from_file_location(
            "packstream_python", native.PACKAGE / "packstream.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        patch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
        spec.loader.exec_module(module)
    assert module.IMPLEMENTATION == "python"
    return module


def rebuilt(value: Any, codec: ModuleType) -> Any:
    """``value`` with every structure (the other codec's) rebuilt as ``codec``'s."""
    if isinstance(value, list | tuple):
        return type(value)(rebuilt(item, codec) for item in value)
    if isinstance(value, dict):
        return {key: rebuilt(item, codec) for key, item in value.items()}
    if type(value).__name__ == "Structure":
        return codec.Structure(value.tag, tuple(rebuilt(item, codec) for item in value.fields))
    return value


def outcome(work: Any, *arguments: Any) -> tuple[str, Any]:
    try:
        return "value", work(*arguments)
    except packstream.PackStreamError as exc:
        return "refused", (str(exc), exc.offset)


@needs_build
def test_the_compiled_codec_is_the_one_in_use() -> None:
    assert packstream.IMPLEMENTATION == "native"
    assert packstream.pack.__module__ == "proxy.codec.packstream_native"
    assert native.current("packstream")


@needs_build
def test_a_build_from_another_source_is_not_used(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(native, "source_digest", lambda module: "0" * 64)
    with caplog.at_level(logging.WARNING, logger=native.__name__):
        assert native.load("packstream") is None
    assert "not compiled from packstream.py as it is now" in caplog.text
    assert not native.current("packstream")


@needs_build
def test_without_its_source_a_build_cannot_be_vouched_for(monkeypatch: pytest.MonkeyPatch) -> None:
    def gone(module: str) -> str:
        raise FileNotFoundError(module)

    monkeypatch.setattr(native, "source_digest", gone)
    assert native.load("packstream") is None


@needs_build
def test_the_environment_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert native.load("packstream") is not None
    monkeypatch.setenv(native.DISABLE, "0")
    assert native.load("packstream") is None


@needs_build
def test_building_again_leaves_a_current_build_alone(capsys: pytest.CaptureFixture[str]) -> None:
    assert native.main([]) == 0
    assert "compiled already" in capsys.readouterr().out


def test_the_compiled_source_stops_at_the_hand_over() -> None:
    text = (native.PACKAGE / "packstream.py").read_text(encoding="utf-8")
    compiled, marker, rest = text.partition(native.CUT)
    assert marker and "load(" in rest and "load(" not in compiled


@needs_build
@EXAMPLES
@given(values)
def test_both_pack_alike(python_codec: ModuleType, value: Any) -> None:
    expected = outcome(python_codec.pack, rebuilt(value, python_codec))
    assert outcome(packstream.pack, value) == expected


@needs_build
@EXAMPLES
@given(
    st.one_of(
        st.binary(max_size=64),
        st.tuples(values, st.integers(0, 200), st.binary(max_size=4)).map(
            lambda spoilt: _spoil(packstream.pack(spoilt[0]), spoilt[1], spoilt[2])
        ),
    )
)
def test_both_unpack_alike(python_codec: ModuleType, data: bytes) -> None:
    limits = python_codec.Limits(max_depth=8, max_items=50, max_containers=20)
    kind, read = outcome(python_codec.unpack, data, limits)
    compiled = outcome(
        packstream.unpack, data, packstream.Limits(max_depth=8, max_items=50, max_containers=20)
    )
    assert compiled[0] == kind
    if kind == "refused":
        assert compiled[1] == read
    else:  # compared as bytes: a NaN is not equal to itself
        assert packstream.pack(compiled[1]) == packstream.pack(rebuilt(read, packstream))


def _spoil(data: bytes, at: int, insert: bytes) -> bytes:
    """Valid PackStream cut short at ``at``, or with ``insert`` put in there."""
    at = min(at, len(data))
    return data[:at] + insert + (data[at:] if insert else b"")


def test_every_installation_compiles_it() -> None:
    """The bootstrap (the README's two commands) and the image's build both run the build, and
    neither ships a build made elsewhere: the image's context leaves compiled modules out."""
    root = native.PACKAGE.parent.parent
    assert ".venv/bin/python -m proxy.codec.native" in (root / ".ci" / "bootstrap").read_text(
        encoding="utf-8"
    )
    dockerfile = (root / "Dockerfile").read_text(encoding="utf-8")
    assert "-m proxy.codec.native --python /opt/mypyc/bin/python" in dockerfile
    assert "proxy/codec/*.so" in (root / ".dockerignore").read_text(encoding="utf-8").split()
    assert "proxy/codec/*.so" in (root / ".gitignore").read_text(encoding="utf-8").split()
