#!/usr/bin/env bash
# Installs every Debian package moesim needs. Idempotent; run as root (or via sudo).
# Set MOESIM_NO_TORCH=1 to skip the (large, optional) LibTorch backend packages.
set -euo pipefail

pkgs=(
  build-essential cmake ninja-build pkg-config
  libeigen3-dev libyaml-cpp-dev zlib1g-dev
  catch2 librapidcheck-dev libbenchmark-dev
  gnuplot-nox libgnuplot-iostream-dev libboost-iostreams-dev libboost-filesystem-dev
  libfccp-dev
  libopenmpi-dev openmpi-bin
  clang libclang-rt-dev
)
torch_pkgs=(libtorch-dev libgloo-dev libopenblas0-pthread libdnnl-dev libsentencepiece-dev sentencepiece python3-torch python3-numpy python3-pandas)

if [ "${MOESIM_NO_TORCH:-0}" != "1" ]; then pkgs+=("${torch_pkgs[@]}"); fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
