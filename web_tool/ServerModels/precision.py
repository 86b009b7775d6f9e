"""`--precision bf16`: a Keras network computed in bfloat16 (Keras' `mixed_bfloat16` policy: bf16
arithmetic, float32 weights), on CPUs with bf16 instructions.

bf16 halves the bytes every layer moves and, on CPUs with bf16 dot-product instructions (x86
AVX512-BF16 or AMX, Arm's BF16 extension), runs convolutions on them; without such instructions
it is emulated and slower than float32, so there the server says so and serves float32. Wide
networks gain most (bench/predpatch.py --precision bf16); the class maps agree with float32's on
all but a fraction of a percent of the pixels.
"""

from __future__ import annotations

import platform
from pathlib import Path

import keras

#: CPU flags (as Linux lists them in /proc/cpuinfo) of instructions that compute in bf16
BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")
CPUINFO = Path("/proc/cpuinfo")
PRECISIONS = ("float32", "bf16")


def cpu_bf16_flag(cpuinfo: Path | None = None) -> str | None:
    """The first of BF16_FLAGS this CPU has (as `cpuinfo`, default /proc/cpuinfo, lists them), or None
    (also where the CPU cannot be asked)."""
    try:
        text = (cpuinfo or CPUINFO).read_text()
    except OSError:
        return None
    flags = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86, Arm
            flags.update(value.split())
    return next((flag for flag in BF16_FLAGS if flag in flags), None)


def no_bf16_message() -> str:
    return (
        f"--precision bf16: this CPU ({platform.machine()}) has no bf16 instructions (none of"
        f" {', '.join(BF16_FLAGS)} in {CPUINFO}), where bf16 is emulated and slower: serving in float32"
    )


def in_bfloat16(network: keras.Model) -> keras.Model:
    """A copy of `network` whose layers compute in bf16 (Keras' mixed_bfloat16 policy), with the same
    float32 weights."""

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        config["dtype"] = "mixed_bfloat16"
        return layer.__class__.from_config(config)

    other = keras.models.clone_model(network, clone_function=clone)
    other.set_weights(network.get_weights())
    other.trainable = network.trainable
    return other
