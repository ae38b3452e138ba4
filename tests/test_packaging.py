"""The built desktop bundle, run by packaging/smoke_test.py (slow: needs packaging/build.sh first)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(os.environ.get("BIOSCAN_TEST_BUNDLE") != "1",
                    reason="set BIOSCAN_TEST_BUNDLE=1 after packaging/build.sh to test the built bundle")
def test_built_bundle_identifies_and_starts_offline():
    proc = subprocess.run([sys.executable, str(ROOT / "packaging" / "smoke_test.py")], capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "smoke test passed" in proc.stdout
