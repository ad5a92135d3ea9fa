#!/usr/bin/env bash
# parawave developer entry point. The README's two commands:
#   ./run.sh serve   install the runtime (no torch) into .venv and start the service on the bundled voice
#   ./run.sh test    install what the tests need (CPU torch, flite) into .venv and run the default suite
# Also: ./run.sh test-all (slow tests too), ./run.sh lint, ./run.sh dev (install only), ./run.sh clean.
# Extra arguments go to the underlying command (pytest / parawave serve).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
BIN=$VENV/bin
TORCH=${TORCH:-torch==2.13.0}
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

apt_install() {  # apt_install PKG...: Debian packages, once
  echo "run.sh: installing $* with apt-get" >&2
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

venv() {
  if [ ! -x "$BIN/python" ]; then
    "$PYTHON" -m venv "$VENV" 2>/dev/null || { rm -rf "$VENV"; apt_install python3-venv; "$PYTHON" -m venv "$VENV"; }
    "$BIN/python" -m pip install -q --upgrade pip
  fi
}

# stamp NAME: true when the install NAME is newer than pyproject.toml
fresh() { [ -f "$VENV/.$1" ] && [ "$VENV/.$1" -nt pyproject.toml ]; }

# ONNX Runtime flavour: "gpu" (onnxruntime-gpu + NVIDIA's CUDA/cuDNN pip packages) when an NVIDIA
# GPU answers nvidia-smi, else "cpu". PARAWAVE_ORT=cpu|gpu forces one; PARAWAVE_DEVICE=cpu means cpu.
ort_flavour() {
  case "${PARAWAVE_ORT:-}" in cpu|gpu) echo "$PARAWAVE_ORT"; return ;; esac
  if [ "${PARAWAVE_DEVICE:-auto}" != cpu ] && command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    echo gpu
  else
    echo cpu
  fi
}

# install_ort EXTRAS: the project with the flavour's runtime extra (the two onnxruntime
# distributions ship the same module, so the other one is removed first); a failed GPU install
# falls back to the CPU runtime with a warning.
install_ort() {
  local flavour other
  flavour=$(ort_flavour)
  other=onnxruntime-gpu; [ "$flavour" = gpu ] && other=onnxruntime
  "$BIN/pip" uninstall -q -y "$other" >/dev/null 2>&1 || true
  if ! "$BIN/pip" install -q -e ".[$flavour${1:+,$1}]"; then
    [ "$flavour" = gpu ] || return 1
    echo "run.sh: onnxruntime-gpu did not install; falling back to the CPU runtime" >&2
    "$BIN/pip" uninstall -q -y onnxruntime-gpu >/dev/null 2>&1 || true
    "$BIN/pip" install -q -e ".[cpu${1:+,$1}]"
    flavour=cpu
  fi
  rm -f "$VENV"/.ort-*; touch "$VENV/.ort-$flavour"
}

install_serve() {
  venv
  if ! fresh serve || [ ! -f "$VENV/.ort-$(ort_flavour)" ]; then
    install_ort && touch "$VENV/.serve"
  fi
}

install_dev() {
  command -v flite >/dev/null || apt_install flite
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_install nginx-light  # tests/docker: nginx -t
  command -v chromium >/dev/null || apt_install chromium  # tests/service/test_web_page.py (driven by Playwright)
  # tests/docker with a real engine (test_images.py, test_compose_up.py): Debian's Docker engine,
  # compose and mmdebstrap (a base image from Debian's packages); the tests start dockerd. As root only.
  if [ "$(id -u)" = 0 ] && { ! command -v dockerd >/dev/null || ! command -v docker-compose >/dev/null || ! command -v mmdebstrap >/dev/null; }; then
    apt_install docker.io docker-compose mmdebstrap
  fi
  venv
  if ! fresh dev; then
    # CPU torch first: an unpinned torch would pull several GB of CUDA packages.
    "$BIN/pip" install -q "$TORCH"
    install_ort train,eval,dev,load
    touch "$VENV/.dev" "$VENV/.serve"
  fi
}

cmd=${1:-help}; shift || true
case "$cmd" in
  serve)    install_serve; exec "$BIN/parawave" serve "$@" ;;
  test)     install_dev;   exec "$BIN/python" -m pytest -q "$@" ;;
  test-all) install_dev;   exec "$BIN/python" -m pytest -q -m '' "$@" ;;
  lint)     install_dev;   "$BIN/ruff" check . && exec "$BIN/ruff" format --check . ;;
  dev)      install_dev;   echo "ready: source $BIN/activate" ;;
  clean)    rm -rf "$VENV" .pytest_cache .ruff_cache ./*.egg-info ;;
  *)        sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' ;;
esac
