"""The k-mer profile branch of a DNA pack (engine.train.dna_profile), on the tests' tiny pack."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch", reason="needs the [train] extra")

from engine.models.dna_encoder import DnaEncoder  # noqa: E402
from engine.models.pack import load_pack  # noqa: E402
from engine.train.dna_profile import add_kmer_profile, embed_with_profile, fit_profile, kmer_frequencies  # noqa: E402


@pytest.fixture(scope="module")
def profile_pack(tmp_path_factory, tiny_dna_pack, synthetic_split):
    out = tmp_path_factory.mktemp("profile") / "tiny-dna-profile"
    return add_kmer_profile(tiny_dna_pack, [r.sequence for r in synthetic_split[0]], out, version="9.9.9",
                            dims=16, log=lambda m: None)


def test_kmer_frequencies_count_each_valid_kmer_once_per_occurrence():
    from engine.models.dna_tokenizer import KmerTokenizer

    tok = KmerTokenizer(k=2, max_len=720)
    freq = kmer_frequencies(tok, ["AAAC", "ANAC", "A"])
    aa, ac = 0, 1  # base-4 indices of AA and AC
    assert freq[0, aa] == pytest.approx(2 / 3) and freq[0, ac] == pytest.approx(1 / 3)
    assert freq[1].sum() == pytest.approx(1.0) and freq[1, ac] == 1.0  # AN and NA are ambiguous
    assert freq[2].sum() == 0


def test_the_onnx_branch_computes_the_documented_embedding(profile_pack, tiny_dna_pack, synthetic_split):
    library, known, novel = synthetic_split
    seqs = [r.sequence for r in known + novel]
    base = DnaEncoder.from_path(tiny_dna_pack, precision="fp32", device="cpu")
    combined = DnaEncoder.from_path(profile_pack, precision="fp32", device="cpu")
    pack = load_pack(profile_pack)
    assert pack.version == "9.9.9" and pack.embedding_dim == base.dim
    assert pack.manifest["architecture"]["kmer_profile"]["dims"] == 16
    params = fit_profile(base.embed, base.tokenizer, [r.sequence for r in library], dims=16)
    tokens = base.tokenizer.encode_batch(seqs)
    expected = embed_with_profile(base.embed(seqs), tokens, params)
    got = combined.embed(seqs)
    assert np.abs(got - expected).max() < 1e-4
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    # and the profile changes the space: not the CNN's embedding any more
    assert np.abs(got - base.embed(seqs)).max() > 0.05


def test_int8_branch_agrees_with_fp32_and_a_pack_is_not_extended_twice(profile_pack, synthetic_split, tmp_path):
    seqs = [r.sequence for r in synthetic_split[1]]
    a = DnaEncoder.from_path(profile_pack, precision="fp32", device="cpu").embed(seqs)
    b = DnaEncoder.from_path(profile_pack, precision="int8", device="cpu").embed(seqs)
    assert (a * b).sum(axis=1).min() > 0.99
    with pytest.raises(ValueError, match="already"):
        add_kmer_profile(profile_pack, seqs, tmp_path / "again", version="1", log=lambda m: None)
