"""Precision policies: which one a run uses, and setting it for a block of code.

`config.training.precision` is one of `PRECISIONS`. `"auto"` picks
`mixed_bfloat16` where the hardware computes bfloat16 natively (TPUs, x86
CPUs with AMX-BF16 or AVX512-BF16) and float32 elsewhere: a CPU without
native bfloat16 emulates it, which is slower than float32.

Keras reads its global dtype policy when a layer is created, so models are
built inside `dtype_policy(...)`; the block restores the previous policy
afterwards, also when it raises:

    with precision.dtype_policy(config.training.precision, on_tpu) as name:
        model = builders.build_model(config, num_classes)
"""

import contextlib

import keras

PRECISIONS = ("float32", "mixed_bfloat16", "auto")
CPUINFO = "/proc/cpuinfo"
NATIVE_BFLOAT16_FLAGS = ("amx_bf16", "avx512_bf16")


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


def resolve_precision(precision, on_tpu=False, cpuinfo_path=CPUINFO):
    """Maps `"auto"` to `"mixed_bfloat16"` on TPUs and bf16-capable CPUs, else `"float32"`.

    Args:
        precision: one of `PRECISIONS` (any other name is returned as is).
        on_tpu: whether the run uses a TPU. Defaults to `False`.
        cpuinfo_path: see `cpu_has_native_bfloat16`. Defaults to
            `"/proc/cpuinfo"`.

    Returns:
        A Keras dtype policy name: `precision` itself unless it is `"auto"`.
    """
    if precision != "auto":
        return precision
    return "mixed_bfloat16" if on_tpu or cpu_has_native_bfloat16(cpuinfo_path) else "float32"


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
