"""Precision policies: which one a run uses, and setting it for a block of code.

`config.training.precision` is one of `PRECISIONS`. `"auto"` picks
`mixed_bfloat16` where the hardware computes bfloat16 natively (TPUs, x86
CPUs with AMX-BF16 or AVX512-BF16, through TensorFlow's oneDNN kernels) and
float32 elsewhere: a CPU without native bfloat16 emulates it, which is slower
than float32. With oneDNN switched off (`TF_ENABLE_ONEDNN_OPTS=0`, which
deterministic mode sets) TensorFlow's own CPU kernels compute bfloat16 even
on such CPUs at a fifth of float32's speed (the quickstart: 19 against 100
images/s on a 2-core AMD EPYC with AVX512-BF16), so `"auto"` is float32 then.

Keras reads its global dtype policy when a layer is created, so models are
built inside `dtype_policy(...)`; the block restores the previous policy
afterwards, also when it raises:

    with precision.dtype_policy(config.training.precision, on_tpu) as name:
        model = builders.build_model(config, num_classes)
"""

import contextlib
import os

import keras

PRECISIONS = ("float32", "mixed_bfloat16", "auto")
CPUINFO = "/proc/cpuinfo"
NATIVE_BFLOAT16_FLAGS = ("amx_bf16", "avx512_bf16")
ONEDNN_SWITCH = "TF_ENABLE_ONEDNN_OPTS"


def cpu_has_native_bfloat16(cpuinfo_path=CPUINFO):
    """Whether this CPU computes bfloat16 natively (x86 AMX-BF16 or AVX512-BF16).

    Args:
        cpuinfo_path: the Linux CPU description to read the flags from.
            Defaults to `"/proc/cpuinfo"`; an unreadable file (e.g. off
            Linux) means no.

    Returns:
        `True` if one of `NATIVE_BFLOAT16_FLAGS` is in the file.
    """
    try:
        with open(cpuinfo_path) as f:
            flags = f.read()
    except OSError:
        return False
    return any(flag in flags for flag in NATIVE_BFLOAT16_FLAGS)


def onednn_switched_off(environ=None):
    """Whether `TF_ENABLE_ONEDNN_OPTS` turns TensorFlow's oneDNN CPU kernels off.

    TensorFlow reads the variable as a boolean when it is imported: `0` or
    `false` (any case) switch oneDNN off; unset, it is on for x86 CPUs.

    Args:
        environ: the environment to read. Defaults to `os.environ`.

    Returns:
        `True` if the variable is `0` or `false`.
    """
    value = (os.environ if environ is None else environ).get(ONEDNN_SWITCH, "")
    return value.strip().lower() in ("0", "false")


def resolve_precision(precision, on_tpu=False, cpuinfo_path=CPUINFO, environ=None):
    """Maps `"auto"` to `"mixed_bfloat16"` where bfloat16 is fast, else `"float32"`.

    bfloat16 is fast on TPUs, and on CPUs with native bfloat16 when oneDNN is
    on (see the module docstring).

    Args:
        precision: one of `PRECISIONS` (any other name is returned as is).
        on_tpu: whether the run uses a TPU. Defaults to `False`.
        cpuinfo_path: see `cpu_has_native_bfloat16`. Defaults to
            `"/proc/cpuinfo"`.
        environ: see `onednn_switched_off`. Defaults to `os.environ`.

    Returns:
        A Keras dtype policy name: `precision` itself unless it is `"auto"`.
    """
    if precision != "auto":
        return precision
    if on_tpu:
        return "mixed_bfloat16"
    fast_cpu = cpu_has_native_bfloat16(cpuinfo_path) and not onednn_switched_off(environ)
    return "mixed_bfloat16" if fast_cpu else "float32"


@contextlib.contextmanager
def dtype_policy(precision, on_tpu=False):
    """Sets Keras' global dtype policy for a `with` block, then restores the previous one.

    The previous policy comes back when the block ends, also when it raises;
    blocks nest.

    Args:
        precision: one of `PRECISIONS` (`"auto"` is resolved by
            `resolve_precision`) or another Keras dtype policy name.
        on_tpu: whether the run uses a TPU (for `"auto"`). Defaults to `False`.

    Yields:
        The policy name in force inside the block.
    """
    name = resolve_precision(precision, on_tpu)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield name
    finally:
        keras.config.set_dtype_policy(previous)
