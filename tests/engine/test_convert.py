"""Checkpoint import: small randomly initialised checkpoints of each architecture, saved as the
framework saves them, converted to packs and checked against the framework's output."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the [train] extra")
transformers = pytest.importorskip("transformers", reason="needs the [train] extra")

from engine.errors import ModelPackError  # noqa: E402
from engine.models.pack import load_pack  # noqa: E402
from engine.train.convert import convert_checkpoint, quantize_pack  # noqa: E402


def _cos(a, b):
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.fixture(scope="module")
def barcodebert_dir(tmp_path_factory):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    k = 3
    config = BertConfig(vocab_size=4**k + 2, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=240)
    d = tmp_path_factory.mktemp("ckpt") / "barcodebert-k3"
    BertForMaskedLM(config).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def barcodebert_pack(barcodebert_dir, tmp_path_factory):
    """The checkpoint converted once, through the command line."""
    from engine.cli import main

    out = tmp_path_factory.mktemp("packs") / "bb"
    assert main(["models", "import", "--kind", "barcodebert", str(barcodebert_dir), "--out", str(out),
                 "--name", "tiny-barcodebert"]) == 0
    return out


def test_barcodebert_checkpoint_becomes_a_dna_pack_the_dna_encoder_uses(barcodebert_pack, barcodebert_dir,
                                                                        synthetic_split):
    from transformers import BertModel

    from engine.models.dna_encoder import DnaEncoder
    from engine.models.dna_tokenizer import BertKmerTokenizer

    pack = load_pack(barcodebert_pack)
    assert pack.ident == "tiny-barcodebert@1.0.0"
    assert pack.modality == "dna" and pack.embedding_dim == 32
    assert pack.preprocessing["kind"] == "dna-kmer-bert" and pack.preprocessing["k"] == 3
    assert pack.manifest["conversion"]["onnx_max_abs_diff"] < 1e-3

    seqs = [b.sequence for b in synthetic_split[0][:5]]
    tok = BertKmerTokenizer.from_config(pack.preprocessing)
    ids = torch.from_numpy(tok.encode_batch(seqs))
    bert = BertModel.from_pretrained(barcodebert_dir, add_pooling_layer=False).eval()
    with torch.no_grad():
        mask = (ids != tok.pad_id).long()
        h = bert(input_ids=ids, attention_mask=mask).last_hidden_state
        ref = ((h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)).numpy()
    for precision, floor in (("fp32", 0.9999), ("int8", 0.95)):
        enc = DnaEncoder(pack, precision=precision, device="cpu")
        assert enc.tokenizer == tok
        got = enc.embed(seqs)
        assert _cos(got, ref).min() > floor, precision


def test_bert_kmer_tokenizer_is_non_overlapping_and_marks_ambiguous_kmers():
    from engine.models.dna_tokenizer import BertKmerTokenizer, KmerTokenizer, tokenizer_from_config

    tok = BertKmerTokenizer(k=3, max_len=12, cls_id=70, sep_id=71)
    # ACG=0*16+1*4+2=6, TTT=63, AN?=unk, tail "C" -> unk; then capped at 12 bases
    ids = tok.encode_one("ACGTTTANCCAAC" + "GGG")
    assert ids.tolist() == [70, 6 + 2, 63 + 2, 1, (1 * 16 + 0 + 0) + 2, 71]
    assert tokenizer_from_config(tok.config()) == tok
    assert tokenizer_from_config(KmerTokenizer().config()) == KmerTokenizer()
    batch = BertKmerTokenizer(k=3).encode_batch(["ACGACG", "ACG"])
    assert batch.tolist() == [[8, 8], [8, 0]]


def test_vocab_txt_decides_the_kmer_layout(barcodebert_dir, tmp_path):
    import itertools
    import shutil

    from engine.train.convert import _bert_tokenizer
    from transformers import BertConfig

    d = tmp_path / "with-vocab"
    shutil.copytree(barcodebert_dir, d)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + ["".join(p) for p in itertools.product("ACGT", repeat=3)]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = _bert_tokenizer(d, BertConfig.from_pretrained(d))
    assert (tok.k, tok.kmer_offset, tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id) == (3, 5, 0, 1, 2, 3)
    (d / "vocab.txt").write_text("\n".join(vocab[:5] + sorted(vocab[5:], reverse=True)) + "\n")
    with pytest.raises(ModelPackError, match="product order"):
        _bert_tokenizer(d, BertConfig.from_pretrained(d))


def test_hf_vit_checkpoint_becomes_an_image_pack(tmp_path):
    from PIL import Image
    from transformers import ViTConfig, ViTModel

    from engine.models.image_encoder import ImageEncoder
    from engine.models.image_preprocess import ImagePreprocess

    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64)
    src = tmp_path / "vit"
    ViTModel(config, add_pooling_layer=False).save_pretrained(src)
    (src / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.25, 0.3], "size": {"height": 32, "width": 32}}))
    pack = load_pack(convert_checkpoint("hf-vit", src, tmp_path / "vit-pack", log=lambda m: None))
    assert pack.modality == "image" and pack.embedding_dim == 32
    pre = ImagePreprocess.from_config(pack.preprocessing)
    assert pre.size == 32 and np.allclose(pre.offset, [127.5, 102.0, 76.5]) and np.allclose(pre.scale, [51, 63.75, 76.5])

    rng = np.random.default_rng(1)
    photos = [Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)) for _ in range(3)]
    x = pre.batch(photos)
    vit = ViTModel.from_pretrained(src, add_pooling_layer=False).eval()
    with torch.no_grad():
        ref = vit(pixel_values=torch.from_numpy(x)).last_hidden_state[:, 0].numpy()
    assert _cos(ImageEncoder(pack, "fp32", device="cpu").embed(photos), ref).min() > 0.9999
    assert _cos(ImageEncoder(pack, "int8", device="cpu").embed(photos), ref).min() > 0.95


def test_open_clip_checkpoint_becomes_an_image_pack(tmp_path):
    from engine.models.image_encoder import ImageEncoder
    from engine.train.convert_models import OpenClipVisual

    torch.manual_seed(0)
    model_cfg = {"embed_dim": 24, "quick_gelu": True,
                 "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
                 "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    visual = OpenClipVisual.from_config(model_cfg)
    # an open_clip checkpoint holds the text tower too; the converter must take visual.* only
    state = {f"visual.{k}": v for k, v in visual.state_dict().items()}
    state["text_projection"] = torch.randn(32, 24)
    state["logit_scale"] = torch.tensor(4.6)
    src = tmp_path / "clip"
    src.mkdir()
    torch.save(state, src / "open_clip_pytorch_model.bin")
    (src / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": model_cfg, "preprocess_cfg": {"mean": [0.48, 0.46, 0.41], "std": [0.27, 0.26, 0.28]}}))

    pack = load_pack(convert_checkpoint("open-clip", src, tmp_path / "clip-pack", log=lambda m: None))
    assert pack.modality == "image" and pack.embedding_dim == 24
    assert pack.preprocessing["resample"] == "bicubic"
    x = np.random.default_rng(2).normal(size=(3, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        ref = visual.eval()(torch.from_numpy(x)).numpy()
    enc = ImageEncoder(pack, "fp32", device="cpu")
    assert _cos(enc.embed_arrays(x), ref).min() > 0.9999

    state.pop("visual.proj")
    torch.save(state, src / "open_clip_pytorch_model.bin")
    with pytest.raises(ModelPackError, match="missing proj"):
        convert_checkpoint("open-clip", src, tmp_path / "broken", log=lambda m: None)


def test_quantize_adds_int8_to_an_fp32_pack(barcodebert_pack, tmp_path, capsys):
    import shutil

    from engine.cli import main
    from engine.models.pack import write_manifest

    full = barcodebert_pack
    fp32_only = tmp_path / "fp32-only"
    fp32_only.mkdir()
    shutil.copy(full / "model.fp32.onnx", fp32_only)
    manifest = json.loads((full / "manifest.json").read_text())
    manifest["files"] = [{"path": "model.fp32.onnx", "precision": "fp32"}]
    write_manifest(fp32_only, manifest)
    with pytest.raises(ModelPackError, match="no int8"):
        load_pack(fp32_only).model_file("int8")
    assert main(["models", "quantize", str(fp32_only)]) == 0
    pack = load_pack(fp32_only)
    assert pack.model_path("int8").is_file()
    assert pack.manifest["quantization"]["int8_cosine_to_fp32"]["mean"] > 0.95
    assert main(["models", "quantize", str(fp32_only)]) == 1  # it has int8 now: a clear error, exit 1
    assert "already has an int8" in capsys.readouterr().err
    with pytest.raises(ModelPackError, match="already has an int8"):
        quantize_pack(fp32_only, log=lambda m: None)


def test_unknown_kind_and_missing_folder_are_clear_errors(tmp_path):
    with pytest.raises(ModelPackError, match="not a checkpoint folder"):
        convert_checkpoint("hf-vit", tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelPackError, match="unknown checkpoint kind"):
        convert_checkpoint("resnet", tmp_path / "empty", tmp_path / "out")
    with pytest.raises(ModelPackError, match="open_clip_config.json"):
        convert_checkpoint("open-clip", tmp_path / "empty", tmp_path / "out")

