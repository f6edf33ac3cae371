#!/usr/bin/env bash
# Type-checks gaze-worker and gaze with the `cuda` cargo feature on a
# machine with no GPU and no system CUDA toolkit, as `cargo check -p
# gaze-worker -p gaze-coordinator --features cuda --locked`. Extra
# arguments go to cargo, such as `--all-targets`.
#
# What a pass proves: gaze-worker, gaze and gaze-shared compile with
# candle's CUDA backend enabled, and the build scripts of cudarc and
# candle-kernels succeed. The latter compiles candle's CUDA kernels with
# nvcc, to PTX and to the static library libmoe.a, for CUDA_COMPUTE_CAP
# (default 90, for H100 and H200).
#
# What it does not prove: nothing is linked and nothing runs on a GPU. A
# `cargo build` fails at the link step here, because cudarc links against
# the driver library libcuda.so, which no PyPI wheel provides. It comes
# with the NVIDIA driver, or as a stub in the full toolkit's lib64/stubs.
#
# The toolkit is NVIDIA's CUDA 13.4 wheels from PyPI, in a virtual
# environment under GAZE_TOOLS_DIR (default ~/.cache/gaze). CUDA 12 cannot
# be used this way, because nvidia-cuda-nvcc-cu12 12.9.86 ships ptxas but no
# nvcc. The Dockerfile builds with CUDA 12.4 instead, so code that compiles
# differently under the two CUDA versions is not covered by this check.
#
# GAZE_CUDA_TARGET_DIR (default target/cuda-check) is the cargo target
# folder, kept apart from the CPU build. A first run took 11 minutes on a
# 2-core machine shared with another build, 8 of them in candle-kernels'
# nvcc step.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
tools="${GAZE_TOOLS_DIR:-$HOME/.cache/gaze}"
venv="$tools/cuda-venv"
export PATH="$HOME/.cargo/bin:$PATH"

# cudarc 0.19.10 rejects a toolkit newer than CUDA 13.4 with "Unsupported
# cuda toolkit version", so these pins move together with cudarc.
wheels=(
    nvidia-cuda-nvcc==13.4.92
    nvidia-cuda-crt==13.4.92
    nvidia-nvvm==13.4.92
    nvidia-cuda-runtime==13.4.92
    nvidia-cuda-cccl==13.3.4.3.1
)
expected_release="release 13.4,"

# nvcc compiles host code with g++.
declare -A install_hints=(
    [cargo]="install Rust 1.88 or newer (rustup.rs)"
    [python3]="install Debian's python3 and python3-venv"
    [g++]="install Debian's g++"
)
for tool in cargo python3 g++; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "error: $tool not found. To fix it, ${install_hints[$tool]} and run this script again." >&2
        exit 1
    fi
done

if [[ ! -x "$venv/bin/pip" ]]; then
    echo "check-cuda: creating $venv" >&2
    mkdir -p "$tools"
    python3 -m venv "$venv"
fi
echo "check-cuda: installing the CUDA 13.4 compiler wheels into $venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check "${wheels[@]}"

# The wheels lay out a toolkit root with bin/, include/, lib/ and nvvm/.
site_packages="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cuda_root="$site_packages/nvidia/cu13"
if [[ ! -x "$cuda_root/bin/nvcc" ]]; then
    echo "error: nvcc not found at $cuda_root/bin/nvcc. Delete $venv and run this script again." >&2
    exit 1
fi
nvcc_version="$("$cuda_root/bin/nvcc" --version)"
if [[ "$nvcc_version" != *"$expected_release"* ]]; then
    echo "error: $cuda_root/bin/nvcc is not CUDA 13.4 (expected \"$expected_release\" in its --version output). Delete $venv and run this script again." >&2
    exit 1
fi

# cudaforge (candle-kernels' build script) takes nvcc from NVCC. It reads
# the GPU architecture from CUDA_COMPUTE_CAP and queries nvidia-smi only when
# that is unset. cudarc runs `nvcc --version` from PATH to choose its CUDA
# API version, and it adds library folders under CUDA_HOME to the link path.
export PATH="$cuda_root/bin:$PATH"
export NVCC="$cuda_root/bin/nvcc"
export CUDA_HOME="$cuda_root"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CARGO_TARGET_DIR="${GAZE_CUDA_TARGET_DIR:-$repo/target/cuda-check}"

echo "check-cuda: cargo check with CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP into $CARGO_TARGET_DIR" >&2
cargo check -p gaze-worker -p gaze-coordinator --features cuda --locked "$@"
