"""Photo preprocessing, the image encoder pack, training into the DNA space, photo identification."""
from __future__ import annotations

import json

import numpy as np
import pytest

from engine.errors import LibraryError, ModelPackError
from engine.models.image_preprocess import ImagePreprocess
from tests.synthetic_photos import make_photo, write_photo_folder

SIZE = 64  # tests train at 64 px: the pipeline is the same, the backbone 12x cheaper than at 224


def test_preprocess_resizes_the_shorter_side_crops_the_centre_and_scales_like_efficientnet_lite():
    from PIL import Image

    a = np.zeros((40, 120, 3), dtype=np.uint8)
    a[:, :40] = 255  # a white band at the left third, cut off by the centre crop
    a[:, 40:80] = (127, 255, 0)
    pre = ImagePreprocess(size=20)
    x = pre.to_array(Image.fromarray(a, "RGB"))
    assert x.shape == (3, 20, 20) and x.dtype == np.float32
    assert np.allclose(x[:, :, 2:-2].mean(axis=(1, 2)), [0.0, 1.0, -127 / 128], atol=0.02)
    assert pre.batch([Image.fromarray(a, "RGB")] * 3).shape == (3, 3, 20, 20)


def test_preprocess_config_round_trips_and_rejects_other_kinds():
    pre = ImagePreprocess(size=96)
    cfg = pre.config()
    assert cfg["kind"] == "image" and cfg["offset"] == 127.0 and cfg["scale"] == 128.0
    assert ImagePreprocess.from_config(json.loads(json.dumps(cfg))) == pre
    with pytest.raises(ValueError):
        ImagePreprocess.from_config({"kind": "dna-kmer", "k": 6, "max_len": 720})
    with pytest.raises(ValueError):
        ImagePreprocess.from_config(dict(cfg, crop="random"))


def test_augmented_views_differ_but_keep_the_model_input_shape():
    from engine.train.image import augment

    rng = np.random.default_rng(0)
    img = make_photo("Synthidae0", rng)
    pre = ImagePreprocess(size=32)
    views = [pre.to_array(augment(img, rng)) for _ in range(3)]
    assert all(v.shape == (3, 32, 32) for v in views)
    assert not np.allclose(views[0], views[1])


def test_clip_loss_is_lowest_for_matched_pairs():
    torch = pytest.importorskip("torch")
    from engine.train.image_model import clip_loss

    torch.manual_seed(0)
    dna = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    shuffled = dna[torch.randperm(8)]
    assert clip_loss(dna, dna, 0.1) < clip_loss(shuffled, dna, 0.1)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    return write_photo_folder(tmp_path_factory.mktemp("photos") / "synthetic", per_family=8, held_out=3)


@pytest.fixture(scope="module")
def trained_pack(tmp_path_factory, tiny_library, photo_folder):
    """An image pack trained on synthetic photos into the tiny DNA library's space; records
    which code turned photos into arrays during training."""
    pytest.importorskip("torch", reason="needs the [train] extra")
    pytest.importorskip("efficientnet_lite_pytorch", reason="needs the [train] extra")
    from engine.models import image_preprocess
    from engine.train.image import train_image_from_folders

    calls = []
    original = image_preprocess.ImagePreprocess.to_array

    def spy(self, image):
        calls.append(self.config())
        return original(self, image)

    image_preprocess.ImagePreprocess.to_array = spy
    try:
        out = tmp_path_factory.mktemp("imgpack") / "tiny-image"
        pack = train_image_from_folders([photo_folder], tiny_library, out, epochs=10, views=2, size=SIZE,
                                        batch_size=16, lr=3e-3, log=lambda m: None)
    finally:
        image_preprocess.ImagePreprocess.to_array = original
    return pack, calls


def test_training_and_inference_use_the_same_preprocessing(trained_pack, photo_folder):
    from engine.io.images import load_photo
    from engine.models.image_encoder import ImageEncoder
    from engine.models.pack import load_pack

    pack_dir, training_calls = trained_pack
    pack = load_pack(pack_dir)
    assert pack.preprocessing == ImagePreprocess(size=SIZE).config()
    assert training_calls and all(c == pack.preprocessing for c in training_calls)
    enc = ImageEncoder(pack, precision="fp32", device="cpu")
    assert enc.preprocess == ImagePreprocess(size=SIZE)
    img = load_photo(next(photo_folder.glob("val_*.jpg")))
    direct = enc.embed_arrays(ImagePreprocess.from_config(pack.preprocessing).batch([img]))
    assert np.allclose(enc.embed([img]), direct, atol=1e-6)


def test_pack_manifest_records_alignment_calibration_and_int8(trained_pack, tiny_library):
    from engine.library import ReferenceLibrary
    from engine.models.image_encoder import ImageEncoder
    from engine.models.pack import load_pack

    pack = load_pack(trained_pack[0])
    assert pack.modality == "image" and pack.embedding_dim == 256
    assert pack.manifest["aligned_to"]["sha256"] == ReferenceLibrary.open(tiny_library).model_for("dna")["sha256"]
    assert pack.manifest["calibration"]["ranks"] == ["order", "family"]
    assert {f["precision"] for f in pack.files} == {"int8", "fp32"}
    assert pack.manifest["training"]["int8_cosine_to_fp32"]["mean"] > 0.95
    # int8 everywhere but the stem and first block, whose convolutions keep fp32 weights
    import onnx

    from engine.train.image import INT8_FP32_WEIGHTS

    graph = onnx.load(str(pack.model_path("int8"))).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    conv_weights = [n.input[1] for n in graph.node if n.op_type == "Conv"]
    fp32 = [w for w in conv_weights if w not in dequantized]
    assert {w.split(".")[1] for w in fp32} == {"_conv_stem", "_blocks"} and all(w.startswith(INT8_FP32_WEIGHTS) for w in fp32)
    assert len(conv_weights) - len(fp32) >= 40
    emb = ImageEncoder(pack, device="cpu").embed([make_photo("Synthidae1", np.random.default_rng(5))])
    assert emb.shape == (1, 256) and np.linalg.norm(emb[0]) == pytest.approx(1.0, abs=1e-3)


def test_held_out_photos_are_identified_to_family_against_dna_references(trained_pack, tiny_library, photo_folder):
    from engine.identify_image import open_image_identifier

    ident = open_image_identifier(tiny_library, trained_pack[0], device="cpu")
    assert ident.reference_modality == "dna"
    held = sorted(photo_folder.glob("val_*.jpg"))
    results = ident.identify(held + [photo_folder / "labels.tsv"])
    assert results[-1].status == "error" and "not an image" in results[-1].error
    correct = sum(r.matches[0].taxonomy.family == r.specimen_id.split("_")[1] for r in results[:-1])
    assert correct >= len(held) - 1, f"{correct}/{len(held)} held-out photos nearest to their family's barcodes"
    for r in results[:-1]:
        row = r.as_row()
        assert row["modality"] == "image" and row["genus"] == "" and row["species"] == ""
        assert row["order"] in ("", "Synthoptera")


def test_photo_references_in_a_library_are_calibrated_and_searched(trained_pack, tiny_library, photo_folder, tmp_path):
    import shutil

    from engine.identify_image import CALIBRATION_KEY, add_photos, open_image_identifier
    from engine.io.images import read_photo_labels
    from engine.library import ReferenceLibrary
    from engine.models.image_encoder import ImageEncoder

    lib_path = tmp_path / "with-photos.db"
    shutil.copy(tiny_library, lib_path)
    lib = ReferenceLibrary.open_writable(lib_path)
    photos = [p for p in read_photo_labels(photo_folder) if not p.path.name.startswith("val_")]
    added, skipped = add_photos(lib, photos, ImageEncoder.from_path(trained_pack[0], device="cpu"))
    assert added == len(photos) and skipped == []
    assert lib.count("image") == len(photos)
    cal = json.loads(lib.meta[CALIBRATION_KEY])
    assert cal["n_photos"] == len(photos) and "family" in cal["similarity"]["rates"]

    ident = open_image_identifier(lib_path, trained_pack[0], device="cpu")
    assert ident.reference_modality == "image"
    held = sorted(photo_folder.glob("val_*.jpg"))
    results = ident.identify(held)
    assert sum(r.matches[0].taxonomy.family == r.specimen_id.split("_")[1] for r in results) >= len(held) - 1


def test_cross_modal_matching_refuses_a_library_of_another_dna_model(trained_pack, tiny_library, tmp_path):
    import shutil

    from engine.identify_image import open_image_identifier
    from engine.library import ReferenceLibrary

    other = tmp_path / "other.db"
    shutil.copy(tiny_library, other)
    lib = ReferenceLibrary.open_writable(other)
    model = lib.model_for("dna")
    lib._set_meta(**{"model.dna": json.dumps(dict(model, sha256="0" * 64))})
    with pytest.raises(LibraryError, match="aligned to DNA model"):
        open_image_identifier(other, trained_pack[0], device="cpu")


def test_a_dna_pack_is_not_an_image_encoder(tiny_dna_pack):
    from engine.models.image_encoder import ImageEncoder

    with pytest.raises(ModelPackError, match="not an image model"):
        ImageEncoder.from_path(tiny_dna_pack)


def test_cli_identifies_photos_and_fuses_them_with_barcodes_of_the_same_specimen(
        trained_pack, tiny_library, tiny_dna_pack, photo_folder, synthetic_split, tmp_path):
    import csv
    import shutil

    from engine.cli import main

    inputs = tmp_path / "inputs"
    shutil.copytree(photo_folder, inputs)
    (inputs / "labels.tsv").unlink()
    photo = sorted(inputs.glob("val_Synthidae0_*.jpg"))[0]
    # a held-out barcode of the photo's family under the photo's specimen id: one specimen, two modalities
    barcode = next(b for b in synthetic_split[1] if b.taxonomy.family == "Synthidae0")
    (inputs / "specimens.fasta").write_text(f">{photo.stem}\n{barcode.sequence}\n")
    out = tmp_path / "results.csv"
    assert main(["identify", str(inputs), "--library", str(tiny_library), "--model", str(tiny_dna_pack),
                 "--image-model", str(trained_pack[0]), "--device", "cpu", "--out", str(out), "-q"]) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    by_modality = {m: [r for r in rows if r["modality"] == m] for m in ("dna", "image", "dna+image")}
    assert len(by_modality["dna"]) == 1 and len(by_modality["dna+image"]) == 1
    assert len(by_modality["image"]) == len(list(inputs.glob("*.jpg")))
    fused = by_modality["dna+image"][0]
    assert fused["specimen_id"] == photo.stem and fused["family"] == "Synthidae0"
    assert "photo_disagrees" not in fused["qc_flags"]


def test_cli_builds_a_photo_library_and_identifies_against_it(trained_pack, photo_folder, tmp_path):
    import csv

    from engine.cli import main

    lib = tmp_path / "photos.db"
    assert main(["library", "build", "--images", str(photo_folder), "--image-model", str(trained_pack[0]),
                 "--out", str(lib), "--device", "cpu", "-q"]) == 0
    out = tmp_path / "r.csv"
    held = sorted(photo_folder.glob("val_*.jpg"))
    assert main(["identify", *map(str, held), "--library", str(lib), "--image-model", str(trained_pack[0]),
                 "--device", "cpu", "--out", str(out), "-q"]) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == len(held) and all(r["modality"] == "image" for r in rows)
    # the library holds the held-out photos too (the labels table names them): each finds itself
    assert all(r["top_match_id"] == r["specimen_id"] for r in rows)


def test_bundle_keeps_only_the_int8_model(trained_pack, tmp_path):
    from engine.models.image_encoder import ImageEncoder
    from engine.models.pack import load_pack
    from engine.models.pack import bundle_int8

    src = load_pack(trained_pack[0])
    dest = load_pack(bundle_int8(src.path, tmp_path / "bundled"))
    assert [f["precision"] for f in dest.files] == ["int8"]
    assert dest.model_file("int8")["sha256"] == src.model_file("int8")["sha256"]
    assert sorted(p.name for p in dest.path.iterdir()) == ["manifest.json", "model.int8.onnx"]
    assert dest.manifest["aligned_to"] == src.manifest["aligned_to"]
    with pytest.raises(ModelPackError, match="no fp32 model"):
        ImageEncoder(dest, precision="fp32", device="cpu")


@pytest.mark.real_data
def test_real_photo_sets_read_split_and_preprocess(real_data):
    from engine.io.images import load_photo, read_photo_labels
    from engine.train.image import GROUP_FAMILIES, split_photos

    ants_bees = read_photo_labels(real_data / "images" / "hymenoptera_ants_bees")
    orders = read_photo_labels(real_data / "images" / "bioscan1m_examples")
    unlabelled = read_photo_labels(real_data / "images" / "bioscan5m_specimens_unlabeled")
    assert {p.label for p in ants_bees} == {"ants", "bees"} and "bees" in GROUP_FAMILIES
    assert all(p.taxonomy.family == "Formicidae" for p in ants_bees if p.label == "ants")
    assert sum(bool(p.taxonomy.order) for p in orders) >= 10
    assert all(p.path.is_file() for p in ants_bees + orders + unlabelled)
    train, calib, held = split_photos(ants_bees + orders)
    assert held and all(p.path.name.startswith("val_") for p in held)
    assert not {p.path for p in held} & {p.path for p in train + calib}
    x = ImagePreprocess().batch([load_photo(p.path) for p in ants_bees[:4] + unlabelled[:4]])
    assert x.shape == (8, 3, 224, 224) and x.min() >= -1.0 and x.max() <= 1.0


def test_photos_of_barcode_identified_specimens_become_references_with_their_provenance(
        trained_pack, tiny_library, photo_folder, tmp_path):
    """`library add-photos`: a project's specimens with a barcode call at the confidence give their
    photos as references, named to the finest rank the call reaches it at; the rest are left out."""
    import shutil

    from engine.identify_image import add_barcoded_photos, open_image_identifier
    from engine.library import ReferenceLibrary
    from engine.models.image_encoder import ImageEncoder
    from engine.project.database import open_project

    photos = sorted(photo_folder.glob("train_*.jpg"))[:3]
    # specimen: (order confidence, family confidence) of its barcode call
    confidences = {"S0": (0.99, 0.97), "S1": (0.98, 0.5), "S2": (0.6, 0.6)}
    with open_project(tmp_path / "p.db", create=True) as project:
        conn = project.conn
        conn.execute("INSERT INTO files (id, path, name, kind) VALUES (1, 'b.fasta', 'b.fasta', 'barcodes')")
        for s, (key, (p_order, p_family)) in enumerate(confidences.items()):
            conn.execute("INSERT INTO files (id, path, name, kind) VALUES (?, ?, ?, 'photo')",
                         [10 + s, str(photos[s]), photos[s].name])
            conn.execute("INSERT INTO specimens (id, specimen_key, status) VALUES (?, ?, 'ok')", [s + 1, key])
            conn.execute("INSERT INTO items (id, specimen_id, file_id, record_key, modality, status, confidence) "
                         "VALUES (?, ?, 1, ?, 'dna', 'ok', ?)", [100 + s, s + 1, key, p_family])
            conn.execute("INSERT INTO items (id, specimen_id, file_id, record_key, modality, status) "
                         "VALUES (?, ?, ?, '', 'photo', 'ok')", [200 + s, s + 1, 10 + s])
            for rank, name, conf in (("order", "Synthoptera", p_order), ("family", "Synthidae1", p_family)):
                conn.execute("INSERT INTO calls (item_id, specimen_id, modality, rank, name, confidence) "
                             "VALUES (?, ?, 'dna', ?, ?, ?)", [100 + s, s + 1, rank, name, conf])
        conn.commit()
    lib_path = tmp_path / "lab.db"
    shutil.copy(tiny_library, lib_path)
    lib = ReferenceLibrary.open_writable(lib_path)
    encoder = ImageEncoder.from_path(trained_pack[0], device="cpu")
    result = add_barcoded_photos(tmp_path / "p.db", lib, encoder, min_confidence=0.9)
    assert result.added == 2 and result.specimens == 2 and result.skipped == []
    refs = lib.references("image")
    named = {rid.split(":")[0]: (t.order, t.family) for rid, t in zip(refs.record_ids, refs.taxonomy)}
    assert named == {"S0": ("Synthoptera", "Synthidae1"), "S1": ("Synthoptera", "")}
    source = json.loads(lib.db.execute("SELECT source FROM refs WHERE modality = 'image' AND record_id LIKE 'S0:%'")
                        .fetchone()[0])
    assert source["specimen"] == "S0" and source["project"] == "p.db" and source["photo"] == photos[0].name
    assert source["call"].startswith("family Synthidae1 (0.970")
    again = add_barcoded_photos(tmp_path / "p.db", lib, encoder, min_confidence=0.9)
    assert again.added == 0 and len(again.skipped) == 2  # already references: not added twice
    lib.close()
    assert open_image_identifier(lib_path, trained_pack[0], device="cpu").reference_modality == "image"
