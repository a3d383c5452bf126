#!/usr/bin/env bash
# Idempotent set-up for a new machine: Debian packages for headless Qt, .venv, CPU torch first,
# then the package with its extras under constraints.txt (torch stays pinned; no CUDA wheels).
# A second venv, .venv-timm, runs the tests on real timm architectures (see install_timm_venv).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
APT_PACKAGES="xvfb xauth libgl1 libegl1 libgl1-mesa-dri libglx-mesa0 libxkbcommon-x11-0 \
libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 \
libxcb-xinerama0 libxcb-xkb1 libxcb-cursor0 libdbus-1-3 libfontconfig1"

missing_apt() {
  for pkg in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || echo "$pkg"
  done
}

install_apt() {
  local missing
  missing=$(missing_apt)
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "setup: missing Debian packages for headless Qt: $missing (install them as root)" >&2
    return 0
  fi
  echo "setup: installing Debian packages: $missing"
  apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
}

install_venv() {
  local stamp=.venv/.installed
  if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt constraints.txt ]; then
    return 0
  fi
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -c constraints.txt "torch==2.13.0"
  .venv/bin/pip install -q -c constraints.txt -e ".[pyqt6,test]"
  if .venv/bin/pip list 2>/dev/null | grep -qi '^nvidia-'; then
    echo "setup: CUDA packages appeared in .venv; torch must stay the CPU build" >&2
    exit 1
  fi
  touch "$stamp"
}

# timm imports torchvision, and the registry's torchvision 0.28 is built against the CUDA torch:
# it cannot load beside the CPU torch of .venv. This venv takes torch, torchvision and timm from
# the registry alone (--isolated ignores local wheels, indexes and constraints): torch 2.13.0+cu130,
# which runs on the CPU. The product never needs it; only the tests marked `timm` run here, with
# pytorch-grad-cam and torchcam (LeGrad) as their references, transformers for real Hugging Face
# ViTs and CLIP/SigLIP, open_clip_torch for real open_clip towers and segmentation_models_pytorch
# for real segmentation architectures (all built from configs with random weights, never
# downloaded). About 5 GB and 1-3 minutes on a new machine.
TIMM_PACKAGES="torch==2.13.0 torchvision==0.28.0 timm==1.0.31 grad-cam==1.5.7 torchcam==0.5.0 \
transformers==5.23.0 open_clip_torch==3.3.0 segmentation-models-pytorch==0.6.0 safetensors \
numpy scikit-image pytest hypothesis"

install_timm_venv() {
  local stamp=.venv-timm/.installed
  if [ -f "$stamp" ] && [ "$stamp" -nt tools/setup.sh ]; then
    return 0
  fi
  [ -x .venv-timm/bin/python ] || "$PY" -m venv .venv-timm
  # shellcheck disable=SC2086
  .venv-timm/bin/pip install --isolated -q $TIMM_PACKAGES
  touch "$stamp"
}

install_apt
install_venv
install_timm_venv
