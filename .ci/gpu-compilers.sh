#!/usr/bin/env bash
# The rocm target's compiler for the GPU-target tests: Debian's clang-19 and lld-19 build HIP code objects
# for AMD GPUs, with the ROCm device library's bitcode (rocm-device-libs) for the math functions.
# (The cuda target's NVRTC comes from PyPI with the test extras.)
#
# Idempotent on a fresh Debian machine: installs what is missing.
set -euo pipefail

say() { echo "gpu-compilers.sh: $*" >&2; }

if command -v clang-19 >/dev/null && [ -x /usr/lib/llvm-19/bin/ld.lld ] \
    && compgen -G "/usr/lib/*/amdgcn/bitcode/ocml.bc" >/dev/null; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    say "clang-19, lld-19 and rocm-device-libs are not installed and installing them needs root"
    exit 1
fi
say "installing clang-19 lld-19 rocm-device-libs"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq clang-19 lld-19 rocm-device-libs >&2
