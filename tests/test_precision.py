"""Tests of byol_tf.training.precision: `auto` resolution from CPU flags and oneDNN, the dtype-policy block."""

import os
import subprocess
import sys
import textwrap

import keras
import pytest

from byol_tf.config import schema
from byol_tf.config import validation
from byol_tf.training import precision

# Excerpts of real /proc/cpuinfo flag lines.
SAPPHIRE_RAPIDS = "flags\t\t: fpu vme sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
ZEN4 = "flags\t\t: fpu vme sse avx2 avx512f avx512_vnni avx512_bf16 vaes\n"
AMX_ONLY = "flags\t\t: fpu sse avx2 amx_bf16 amx_tile\n"
AVX2_ONLY = "flags\t\t: fpu vme sse sse2 avx avx2 fma\n"
AVX512_NO_BF16 = "flags\t\t: fpu sse avx2 avx512f avx512bw avx512_vnni\n"


@pytest.fixture
def cpuinfo(tmp_path):
    def write(text):
        path = tmp_path / "cpuinfo"
        path.write_text(text)
        return str(path)

    return write


@pytest.mark.parametrize("text, native", [
    (SAPPHIRE_RAPIDS, True), (ZEN4, True), (AMX_ONLY, True), (AVX2_ONLY, False), (AVX512_NO_BF16, False)])
def test_cpu_has_native_bfloat16_reads_the_flags(cpuinfo, text, native):
    assert precision.cpu_has_native_bfloat16(cpuinfo(text)) is native


def test_unreadable_cpuinfo_means_no_native_bfloat16(tmp_path):
    assert precision.cpu_has_native_bfloat16(str(tmp_path / "missing")) is False


@pytest.mark.parametrize("text, on_tpu, expected", [
    (ZEN4, False, "mixed_bfloat16"),
    (AMX_ONLY, False, "mixed_bfloat16"),
    (AVX2_ONLY, False, "float32"),
    (AVX512_NO_BF16, False, "float32"),
    (AVX2_ONLY, True, "mixed_bfloat16"),  # a TPU computes bf16 whatever its host CPU
])
def test_auto_resolution(cpuinfo, text, on_tpu, expected):
    assert precision.resolve_precision("auto", on_tpu=on_tpu, cpuinfo_path=cpuinfo(text)) == expected


@pytest.mark.parametrize("value, expected", [
    (None, "mixed_bfloat16"), ("1", "mixed_bfloat16"), ("true", "mixed_bfloat16"),
    ("0", "float32"), ("false", "float32"), (" False ", "float32"),
])
def test_auto_is_float32_on_a_bf16_cpu_when_onednn_is_switched_off(cpuinfo, value, expected):
    environ = {} if value is None else {precision.ONEDNN_SWITCH: value}
    assert precision.resolve_precision("auto", cpuinfo_path=cpuinfo(ZEN4), environ=environ) == expected
    # a TPU and an explicit choice do not depend on the CPU's kernels
    assert precision.resolve_precision("auto", on_tpu=True, cpuinfo_path=cpuinfo(ZEN4), environ=environ) == \
        "mixed_bfloat16"
    assert precision.resolve_precision("mixed_bfloat16", cpuinfo_path=cpuinfo(ZEN4), environ=environ) == \
        "mixed_bfloat16"


def test_deterministic_mode_makes_auto_float32_on_a_bf16_cpu(cpuinfo, tmp_path):
    """`cli.prepare_tensorflow` switches oneDNN off before TensorFlow loads; `auto` then follows."""
    program = textwrap.dedent(f"""
        from byol_tf import cli
        from byol_tf.config import schema
        config = schema.default_config()
        config.data.deterministic = True
        cli.prepare_tensorflow(config)  # as `byol_tf.train` does, before the library loads TensorFlow
        from byol_tf.training import precision
        cpuinfo = {cpuinfo(ZEN4)!r}
        print(precision.resolve_precision("auto", cpuinfo_path=cpuinfo, environ={{}}))  # oneDNN on
        print(precision.resolve_precision("auto", cpuinfo_path=cpuinfo))  # this process
    """)
    env = {k: v for k, v in os.environ.items() if k != precision.ONEDNN_SWITCH}
    done = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["mixed_bfloat16", "float32"]


def test_auto_without_cpuinfo_is_float32(tmp_path):
    assert precision.resolve_precision("auto", cpuinfo_path=str(tmp_path / "missing")) == "float32"


@pytest.mark.parametrize("name", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("text", [ZEN4, AVX2_ONLY])
def test_explicit_precisions_are_kept(cpuinfo, name, text):
    assert precision.resolve_precision(name, cpuinfo_path=cpuinfo(text)) == name
    assert precision.resolve_precision(name, on_tpu=True, cpuinfo_path=cpuinfo(text)) == name


def test_every_precision_validates_and_others_do_not():
    config = schema.default_config()
    for name in precision.PRECISIONS:
        config.training.precision = name
        validation.validate(config)
    config.training.precision = "mixed_float16"
    with pytest.raises(schema.ConfigError, match="training.precision"):
        validation.validate(config)


def _policy():
    return keras.config.dtype_policy().name


def test_policy_applies_to_layers_built_in_the_block_and_is_restored():
    keras.config.set_dtype_policy("float32")
    with precision.dtype_policy("mixed_bfloat16") as name:
        assert name == "mixed_bfloat16"
        assert _policy() == "mixed_bfloat16"
        dense = keras.layers.Dense(2)
        dense.build((None, 3))
    assert _policy() == "float32"
    assert dense.compute_dtype == "bfloat16" and dense.kernel.dtype == "float32"
    assert keras.layers.Dense(2).compute_dtype == "float32"


def test_policy_is_restored_after_an_exception():
    keras.config.set_dtype_policy("float32")
    with pytest.raises(RuntimeError, match="inside"):
        with precision.dtype_policy("mixed_bfloat16"):
            assert _policy() == "mixed_bfloat16"
            raise RuntimeError("inside")
    assert _policy() == "float32"


def test_nested_blocks_restore_their_own_previous_policy():
    keras.config.set_dtype_policy("mixed_float16")  # neither the default nor one of ours
    with precision.dtype_policy("mixed_bfloat16"):
        with precision.dtype_policy("float32"):
            assert _policy() == "float32"
        assert _policy() == "mixed_bfloat16"
        with pytest.raises(ValueError):
            with precision.dtype_policy("float32"):
                raise ValueError
        assert _policy() == "mixed_bfloat16"
    assert _policy() == "mixed_float16"


def test_auto_block_uses_the_resolved_policy(monkeypatch):
    monkeypatch.delenv(precision.ONEDNN_SWITCH, raising=False)
    keras.config.set_dtype_policy("float32")
    with precision.dtype_policy("auto", on_tpu=True) as name:
        assert name == "mixed_bfloat16" and _policy() == "mixed_bfloat16"
    try:
        with open(precision.CPUINFO) as f:
            flags = set(f.read().split())
    except OSError:
        flags = set()
    expected = "mixed_bfloat16" if {"amx_bf16", "avx512_bf16"} & flags else "float32"
    with precision.dtype_policy("auto") as name:
        assert name == expected and _policy() == expected
    assert _policy() == "float32"


def test_unknown_policy_raises_and_leaves_the_policy_alone():
    keras.config.set_dtype_policy("float32")
    with pytest.raises(ValueError):
        with precision.dtype_policy("float13"):
            pass
    assert _policy() == "float32"
