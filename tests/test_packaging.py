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


def test_version_verbose_names_every_bundled_pack_and_the_library_with_sha256(capsys):
    """What a bundle reports about itself (`bioscan --version --verbose`), from the source tree."""
    from engine.cli import main
    from engine.models.pack import load_pack, sha256_file
    from engine.resources import default_library_path, default_model_path

    if not default_library_path().is_file():
        pytest.skip("resources/ has no bundled library yet (see resources/README.md)")
    assert main(["--version", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "device: CPU" in out  # no GPU on the test machines
    for modality in ("dna", "image"):
        pack = load_pack(default_model_path(modality), verify=False)
        assert f"{modality} model: {pack.ident} " in out
        assert pack.model_file("int8")["sha256"] in out
    assert sha256_file(default_library_path()) in out
