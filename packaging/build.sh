#!/usr/bin/env bash
# Build the desktop bundle: dist/BIOSCAN-Desktop/ (PyInstaller one-dir) holding both
# executables, `bioscan` (CLI) and `bioscan-desktop` (GUI), ONNX Runtime, the Qt platform
# plugins and resources/ (model packs + default library).
#
#   packaging/build.sh                 # CPU bundle, build venv in build/pyinstaller/venv
#   packaging/build.sh --gpu           # onnxruntime-gpu instead of onnxruntime (see packaging/README.md)
#   packaging/build.sh --venv DIR      # use (or create) this venv for the build
#   packaging/build.sh --no-install    # reuse the build venv as it is (no pip)
#
# The build venv holds the runtime dependencies only (pyproject's [project] dependencies, no
# [train] extra), so torch & co. cannot end up in the bundle; the spec excludes them as well.
# Packages come from the configured pip index (this project's local mirror). Works the same on
# macOS; on Windows run the commands below from Git Bash, or see packaging/README.md.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

PYTHON="${PYTHON:-python3}"
VENV=""
GPU=0
INSTALL=1
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) VENV="$2"; shift 2 ;;
    --gpu) GPU=1; shift ;;
    --no-install) INSTALL=0; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ "$GPU" = 1 ]; then
  VENV="${VENV:-build/pyinstaller/venv-gpu}"
  export BIOSCAN_BUNDLE_NAME="BIOSCAN-Desktop-GPU"
  ORT_WANTED="onnxruntime-gpu"; ORT_OTHER="onnxruntime"
else
  VENV="${VENV:-build/pyinstaller/venv}"
  export BIOSCAN_BUNDLE_NAME="BIOSCAN-Desktop"
  ORT_WANTED="onnxruntime"; ORT_OTHER="onnxruntime-gpu"
fi
case "$(uname -s)" in
  MINGW*|MSYS*|CYGWIN*) VPY="$VENV/Scripts/python.exe" ;;
  *) VPY="$VENV/bin/python" ;;
esac

if [ ! -x "$VPY" ]; then
  echo "== creating the build venv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if [ "$INSTALL" = 1 ]; then
  echo "== installing the runtime dependencies and PyInstaller into $VENV"
  # the project's runtime dependencies (editable: the spec analyses this checkout's sources)
  "$VPY" -m pip install --quiet -e . "pyinstaller>=6,<7" "pyinstaller-hooks-contrib"
  if [ "$GPU" = 1 ]; then
    # both wheels install the same `onnxruntime` package: only one may be present
    "$VPY" -m pip uninstall --quiet -y "$ORT_OTHER" || true
    "$VPY" -m pip install --quiet "$ORT_WANTED"
  fi
fi
"$VPY" - <<'EOF'
import importlib.util, sys
bad = [m for m in ("torch", "transformers", "onnx", "onnxscript") if importlib.util.find_spec(m)]
if bad:
    print(f"note: the build venv has training packages ({', '.join(bad)}); the spec excludes them", file=sys.stderr)
import onnxruntime
print(f"onnxruntime {onnxruntime.__version__}, providers: {', '.join(onnxruntime.get_available_providers())}")
EOF

if [ ! -f resources/defaults.json ]; then
  echo "warning: resources/defaults.json is missing: the bundle will have no model packs or library" >&2
fi

echo "== PyInstaller"
"$VPY" -m PyInstaller --noconfirm --clean --log-level WARN \
  --workpath build/pyinstaller/work --distpath dist packaging/bioscan.spec

BUNDLE="dist/$BIOSCAN_BUNDLE_NAME"
echo "== bundle: $BUNDLE"
ls "$BUNDLE"
echo "bundle size: $(du -sh "$BUNDLE" | cut -f1) ($(du -sm "$BUNDLE" | cut -f1) MB)"
