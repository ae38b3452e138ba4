#!/usr/bin/env bash
# Build dist/BIOSCAN-Desktop/ (PyInstaller, one folder) from this checkout.
# The build venv gets the runtime dependencies only (no torch, no [train] extra).
#   packaging/build.sh                       # CPU bundle (onnxruntime)
#   BIOSCAN_ORT=onnxruntime-gpu packaging/build.sh   # CUDA bundle (see packaging/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${BIOSCAN_BUILD_VENV:-build/pkg-venv}
ORT=${BIOSCAN_ORT:-onnxruntime}
[ -f resources/defaults.json ] || { echo "resources/ is missing: nothing to bundle" >&2; exit 1; }
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q . "pyinstaller>=6"
if [ "$ORT" != "onnxruntime" ]; then
  "$VENV/bin/pip" uninstall -y -q onnxruntime
  "$VENV/bin/pip" install -q "$ORT"
fi
if "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "torch is installed in $VENV: the bundle must not contain it" >&2; exit 1
fi
"$VENV/bin/pyinstaller" --noconfirm --clean --log-level WARN \
  --distpath dist --workpath build/pyinstaller packaging/bioscan.spec
if [ "$(uname)" = Linux ]; then
  # Symbol tables of the shared libraries (~45 MB; libpython alone carries 17 MB). Not the wheels'
  # vendored *.libs/ folders: auditwheel's patchelf layout does not survive strip (openblas fails to load).
  find dist/BIOSCAN-Desktop/_internal -type f -name '*.so*' -not -path '*.libs/*' -exec strip --strip-unneeded {} +
fi
cp packaging/linux/bioscan-desktop.desktop packaging/linux/bioscan-desktop.png dist/BIOSCAN-Desktop/ 2>/dev/null || true
bytes=$(du -sb dist/BIOSCAN-Desktop | cut -f1)
echo "built dist/BIOSCAN-Desktop: $((bytes / 1000000)) MB"
# the goal is under 400 MB, and the margin is small (398.7 MB on 2026-11-30): say when it is gone
[ "$bytes" -lt 400000000 ] || echo "WARNING: the bundle is over the 400 MB goal; see packaging/README.md" >&2
