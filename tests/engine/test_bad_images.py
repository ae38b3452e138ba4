"""Every input's cost is bounded before it is decoded, and odd photos get a reason, not a call.

Photo bombs, damaged and degenerate photos each give their own error (engine.io.images);
preprocessing never builds an intermediate much larger than its output; `bioscan identify`
streams photos in batches and isolates a photo the model fails on; an overlong "barcode" is
refused by QC; transient failures are told apart from bad inputs (engine.errors).
"""
from __future__ import annotations

import csv
import errno
import io
import json
import sqlite3
import struct
import subprocess
import sys
import tempfile
import weakref
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.errors import BioscanError, InputFormatError, TransientError, is_transient
from engine.io.images import MAX_PIXELS, check_photo, load_photo
from engine.models.image_preprocess import ImagePreprocess
from engine.resources import default_library_path

REPO = Path(__file__).resolve().parents[2]
bundled = pytest.mark.skipif(not default_library_path().is_file(),
                             reason="resources/ has no bundled library yet (see resources/README.md)")


# ------------------------------------------------------------------------------ photos made here
def textured(size=(120, 90), seed: int = 0) -> Image.Image:
    """A photo-like RGB picture: gradients, a checker pattern and noise (never blank)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    a = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), ((xx // 8 + yy // 8) % 2) * 200], -1)
    return Image.fromarray(np.clip(a + rng.normal(0, 10, a.shape), 0, 255).astype(np.uint8), "RGB")


def encoded(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A valid PNG header and a few bytes of image data: what the header claims costs nothing to write."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def tiff_declaring(width: int, height: int) -> bytes:
    """A deflate TIFF of 16 x 16 zeros whose tags say it is width x height (a decompression bomb)."""
    data = bytearray(encoded(Image.new("L", (16, 16), 0), "TIFF", compression="tiff_adobe_deflate"))
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        at = ifd + 2 + 12 * i
        tag = struct.unpack_from("<H", data, at)[0]
        if tag in (256, 257, 278):  # ImageWidth, ImageLength, RowsPerStrip: one LONG each
            struct.pack_into("<HHII", data, at, tag, 4, 1, width if tag == 256 else height)
    return bytes(data)


def bit_flipped_jpeg() -> bytes:
    """A JPEG with one bit flipped in its Huffman table: the entropy-coded data no longer decodes."""
    data = bytearray(encoded(textured((400, 300)), "JPEG", quality=90))
    data[data.index(b"\xff\xc4") + 5] ^= 0x80
    return bytes(data)


def write_bad_photos(folder: Path) -> dict[str, str]:
    """Bad photos in ``folder``: file name -> the reason its error must give."""
    folder.mkdir(parents=True, exist_ok=True)
    jpeg, png = encoded(textured((400, 300)), "JPEG", quality=90), encoded(textured((400, 300)), "PNG")
    nan = np.random.default_rng(2).random((64, 64), dtype=np.float32)
    nan[10, 10], nan[20, 20] = np.nan, np.inf
    files = {
        "png bomb.png": (encoded(Image.new("L", (100_000, 2), 0), "PNG"), "image too elongated"),
        "declared 30000x30000.png": (png_declaring(30_000, 30_000), "image too large to decode safely"),
        "declared 15000x14000.png": (png_declaring(15_000, 14_000), "image too large to decode safely"),
        "tiff bomb.tif": (tiff_declaring(50_000, 50_000), "image too large to decode safely"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated or damaged image"),
        "truncated.png": (png[: len(png) // 2], "truncated or damaged image"),
        "bit flipped.jpg": (bit_flipped_jpeg(), "truncated or damaged image"),
        "zero bytes.jpg": (b"", "the image file is empty (0 bytes)"),
        "notes.jpg": (b"field notes, plate 3: not a photo\n" * 20, "not an image Pillow can read"),
        "blank.png": (encoded(Image.fromarray(np.clip(np.random.default_rng(1).normal(128, 3, (300, 400)), 0, 255)
                                              .astype(np.uint8), "L"), "PNG"), "blank image: no specimen visible"),
        "black.jpg": (encoded(Image.new("RGB", (300, 200), 0), "JPEG"), "blank image: no specimen visible (all black"),
        "white.tif": (encoded(Image.new("RGB", (300, 200), (255, 255, 255)), "TIFF"),
                      "blank image: no specimen visible (all white"),
        "one pixel.png": (encoded(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"),
                          "image too small to show a specimen"),
        "nan float.tif": (encoded(Image.fromarray(nan, "F"), "TIFF"), "float image with NaN or infinite pixels (2 of"),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: reason for name, (_, reason) in files.items()}


def write_good_photos(folder: Path) -> list[str]:
    """Unusual but good photos: 16-bit greyscale TIFF, CMYK JPEG, animated PNG, plain JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    grey16 = np.asarray(textured(seed=3).convert("L"), dtype=np.uint16) * 257
    Image.fromarray(grey16).save(folder / "sixteen bit.tif")
    (folder / "cmyk.jpg").write_bytes(encoded(textured(seed=4).convert("CMYK"), "JPEG"))
    frames = [textured(seed=s) for s in (5, 6, 7)]
    frames[0].save(folder / "animated.png", save_all=True, append_images=frames[1:], duration=100)
    (folder / "plain.jpg").write_bytes(encoded(textured((400, 300), seed=8), "JPEG", quality=90))
    return ["sixteen bit.tif", "cmyk.jpg", "animated.png", "plain.jpg"]


# ------------------------------------------------------------------------------ the photo check
def test_each_bad_photo_is_refused_with_its_own_reason(tmp_path):
    expected = write_bad_photos(tmp_path)
    for name, reason in expected.items():
        with pytest.raises(InputFormatError) as info:
            check_photo(tmp_path / name, min_side=448)
        assert str(info.value).startswith(f"{name}: ") and reason in str(info.value), (name, str(info.value))
    # the bombs are refused from their header: they say what they declared
    with pytest.raises(InputFormatError, match=r"100,000 x 2 px, 50,000:1; the limit is 20:1"):
        load_photo(tmp_path / "png bomb.png")
    with pytest.raises(InputFormatError, match=r"900 MP declared in a \d+-byte file; the limit is 200 MP"):
        load_photo(tmp_path / "declared 30000x30000.png")


def test_unusual_good_photos_still_read_with_their_facts(tmp_path):
    write_good_photos(tmp_path)
    image, facts = check_photo(tmp_path / "sixteen bit.tif")
    assert image.mode == "RGB" and facts["image_mode"] == "I;16" and image.size == (120, 90)
    assert np.asarray(image)[..., 0].std() > 20  # the 16-bit values were scaled, not clipped to white
    image, facts = check_photo(tmp_path / "cmyk.jpg")
    assert image.mode == "RGB" and facts["image_mode"] == "CMYK"
    Image.fromarray(np.random.default_rng(12).random((60, 80), dtype=np.float32), "F").save(tmp_path / "float.tif")
    image, facts = check_photo(tmp_path / "float.tif")
    assert facts["image_mode"] == "F" and 100 < np.asarray(image).mean() < 155  # [0, 1] scaled, not all black
    image, facts = check_photo(tmp_path / "animated.png")
    assert facts["frames"] == 3 and np.array_equal(np.asarray(image), np.asarray(textured(seed=5)))
    # an animated GIF (not a photo suffix, but the same reader): its first frame
    frames = [textured(seed=s) for s in (5, 6)]
    frames[0].save(tmp_path / "animated.gif", save_all=True, append_images=frames[1:], duration=100)
    image, facts = check_photo(tmp_path / "animated.gif")
    assert facts["frames"] == 2 and facts["image_format"] == "GIF" and image.size == (120, 90)


def test_a_large_photo_is_decoded_near_the_model_size_with_its_full_size_facts(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    big = textured((4000, 3000), seed=9)
    big.save(tmp_path / "big.jpg", quality=90, exif=exif.tobytes())
    big.save(tmp_path / "big.png")
    side = ImagePreprocess().decode_side
    image, facts = check_photo(tmp_path / "big.jpg", min_side=side)
    assert (facts["width"], facts["height"], facts["exif_orientation"]) == (3000, 4000, 6)
    assert image.size[0] < image.size[1] and side <= min(image.size) < 2 * side  # upright, 1/4 of the pixels
    image = load_photo(tmp_path / "big.png", min_side=side)
    assert side <= min(image.size) < 2 * side
    assert load_photo(tmp_path / "big.png").size == (4000, 3000)  # without min_side: full resolution


def _resize_whole_then_crop(pre: ImagePreprocess, image: Image.Image) -> np.ndarray:
    """The transform as the packs were trained on it, written out the straightforward way."""
    w, h = image.size
    s = pre.size / min(w, h)
    nw, nh = max(pre.size, round(w * s)), max(pre.size, round(h * s))
    left, top = (nw - pre.size) // 2, (nh - pre.size) // 2
    img = image.resize((nw, nh), resample=Image.Resampling.BILINEAR).crop((left, top, left + pre.size, top + pre.size))
    return ((np.asarray(img, dtype=np.float32) - 127.0) / 128.0).transpose(2, 0, 1)


@pytest.mark.parametrize("size", [(400, 300), (300, 400), (225, 224), (100, 80), (1001, 333), (60, 240)])
def test_preprocessing_of_ordinary_photos_is_exactly_the_trained_one(size):
    pre = ImagePreprocess(size=64)
    image = textured(size, seed=size[0])
    assert np.array_equal(pre.to_array(image), _resize_whole_then_crop(pre, image))


def test_preprocessing_of_an_elongated_strip_resamples_only_its_crop():
    pre = ImagePreprocess(size=64)
    for size in [(4000, 160), (17, 300), (241, 60)]:  # beyond 4:1: resized whole 1600 x 64, 64 x 1129, 257 x 64
        strip = textured(size, seed=size[1])
        assert np.abs(pre.to_array(strip) - _resize_whole_then_crop(pre, strip)).max() <= 1 / 128 + 1e-6
    # 100000 x 2 px resized whole would be 11 million x 224 px x 3 = 7.5 GB; its crop is 224 x 224
    bomb = Image.new("RGB", (100_000, 2), (90, 30, 200))
    x = ImagePreprocess().to_array(bomb)
    assert x.shape == (3, 224, 224) and np.allclose(x[:, 0, 0], (np.array([90, 30, 200]) - 127) / 128)


@pytest.mark.real_data
def test_real_photos_reach_the_model_exactly_as_before(real_data):
    """No real photo is refused, and every one the size of the training photos gets the model input
    it got at full resolution through the old resize-whole-then-crop, bit for bit."""
    pre = ImagePreprocess()
    images = real_data / "images"
    files = sorted((images / "hymenoptera_ants_bees").glob("*/*.jpg")) + sorted(
        (images / "bioscan5m_specimens_unlabeled").glob("*.jpg"))
    assert len(files) > 800
    for f in files:
        image, _ = check_photo(f, min_side=pre.decode_side)
        assert np.array_equal(pre.to_array(image), _resize_whole_then_crop(pre, load_photo(f))), f.name


@bundled
@pytest.mark.real_data
def test_large_real_photos_decoded_near_the_model_size_embed_as_at_full_resolution(real_data, photo_identifier):
    """Trap frames and a dish photo (1,900-2,048 px): drafted or reduced to decode_side, their
    embeddings stay close to those of the full-resolution decode."""
    encoder = photo_identifier.encoder
    pre = encoder.preprocess
    images = real_data / "images"
    candidates = sorted((images / "ami_moth_trap").rglob("*.jpg")) + sorted((images / "flatbug_dish").glob("*.jpg"))
    files = [f for f in candidates if min(Image.open(f).size) >= 2 * pre.decode_side]
    assert len(files) >= 5
    full = encoder.embed_arrays(np.stack([_resize_whole_then_crop(pre, load_photo(f)) for f in files]))
    small = [load_photo(f, min_side=pre.decode_side) for f in files]
    assert all(min(im.size) < 2 * pre.decode_side for im in small)
    near = encoder.embed_arrays(pre.batch(small))
    cosine = (full * near).sum(1) / np.linalg.norm(full, axis=1) / np.linalg.norm(near, axis=1)
    # retrained pack of 2026-12-01: mean 0.9949, min 0.9756 (one trap frame); the first pack gave min 0.9876
    assert cosine.mean() > 0.99 and cosine.min() > 0.97, cosine


_COST_PROBE = """
import json, resource, sys, time
from PIL import Image
from engine.errors import BioscanError
from engine.io.images import check_photo
from engine.models.image_preprocess import ImagePreprocess
strip = Image.new("RGB", (100_000, 2), (90, 30, 200))
ImagePreprocess(size=16).to_array(Image.new("RGB", (40, 30)))  # warm up the code paths
before, t = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.process_time()
try:
    check_photo(sys.argv[1], min_side=448)
    outcome = "read"
except BioscanError as exc:
    outcome = str(exc)
ImagePreprocess().to_array(strip)
print(json.dumps({"outcome": outcome, "cpu_seconds": time.process_time() - t,
                  "extra_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}))
"""


def test_the_png_bomb_costs_under_a_second_and_200_mb(tmp_path):
    """A 274-byte 100000 x 2 PNG (and preprocessing such a strip) in a fresh process: CPU time (not wall
    time, which a loaded runner stretches) and peak RSS
    after start-up is what they add (ru_maxrss is a high-water mark, so it is measured alone)."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(encoded(Image.new("L", (100_000, 2), 0), "PNG"))
    assert bomb.stat().st_size < 1000
    run = subprocess.run([sys.executable, "-c", _COST_PROBE, str(bomb)], cwd=REPO, capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    cost = json.loads(run.stdout)
    assert "image too elongated" in cost["outcome"]
    assert cost["cpu_seconds"] < 1.0 and cost["extra_mb"] < 200, cost


# Hypothesis: whatever the bytes, a photo or a BioscanError, never another exception
def _seed_files() -> list[bytes]:
    photo = textured((64, 48), seed=11)
    return [encoded(photo, "JPEG", quality=80), encoded(photo, "PNG"), encoded(photo, "TIFF"),
            encoded(photo, "TIFF", compression="tiff_lzw"), encoded(photo.convert("P"), "GIF"),
            encoded(photo, "BMP"), encoded(photo, "WEBP")]


def _mutated(seed: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    data = bytearray(seed[: max(1, len(seed) - cut)])
    for where, value in edits:
        data[where % len(data)] = value
    return bytes(data)


def test_arbitrary_bytes_give_a_photo_or_a_bioscan_error():
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    seeds = _seed_files()
    contents = st.one_of(
        st.binary(max_size=2048),
        st.builds(_mutated, st.sampled_from(seeds), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                                              min_size=1, max_size=8), st.integers(0, 400)),
    )

    with tempfile.TemporaryDirectory() as tmp:
        @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(data=contents, suffix=st.sampled_from([".jpg", ".png", ".tif"]))
        def check(data: bytes, suffix: str) -> None:
            path = Path(tmp) / f"photo{suffix}"
            path.write_bytes(data)
            try:
                image, facts = check_photo(path, min_side=32)
            except BioscanError as exc:
                assert str(exc).startswith(path.name)
                return
            assert image.mode == "RGB" and min(image.size) >= 16 and facts["width"] * facts["height"] <= MAX_PIXELS

        check()


# ------------------------------------------------------------------------------ transient failures
def test_transient_failures_are_told_apart_from_bad_inputs():
    from onnxruntime.capi.onnxruntime_pybind11_state import RuntimeException

    assert is_transient(MemoryError())
    assert is_transient(OSError(errno.ENOSPC, "No space left on device"))
    assert is_transient(OSError(errno.EIO, "Input/output error"))
    assert is_transient(TransientError("out of memory, try again"))
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = 13  # SQLITE_FULL, as sqlite3 sets it
    assert is_transient(full)
    assert is_transient(RuntimeException("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory "
                                         "for requested buffer of size 1073741824"))
    try:
        try:
            raise MemoryError()
        except MemoryError as exc:
            raise BioscanError("photo failed") from exc
    except BioscanError as wrapped:
        assert is_transient(wrapped)
    assert not is_transient(RuntimeException("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions"))
    assert not is_transient(OSError(errno.ENOENT, "No such file or directory"))
    assert not is_transient(InputFormatError("x.jpg: not an image Pillow can read"))
    assert not is_transient(ValueError("broken data stream"))


def test_an_io_error_while_reading_a_photo_is_transient(tmp_path, monkeypatch):
    import PIL.Image

    (tmp_path / "ok.jpg").write_bytes(encoded(textured(), "JPEG"))

    def failing_open(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(PIL.Image, "open", failing_open)
    with pytest.raises(TransientError, match="ok.jpg: could not read the image now .*tried again on the next run"):
        check_photo(tmp_path / "ok.jpg")


# ------------------------------------------------------------------------------ identify, bundled models
@pytest.fixture(scope="module")
def photo_identifier():
    from engine.identify_image import open_image_identifier

    return open_image_identifier(device="cpu")


@bundled
def test_identify_gives_one_error_row_per_bad_photo_and_calls_the_good_ones(tmp_path, capsys):
    from engine.cli import main

    folder = tmp_path / "mixed"
    expected = write_bad_photos(folder)
    good = write_good_photos(folder)
    out = tmp_path / "results.csv"
    main(["identify", str(folder), "--out", str(out), "--device", "cpu", "-q"])
    with open(out, newline="", encoding="utf-8") as fh:
        rows = {Path(r["source_file"]).name: r for r in csv.DictReader(fh)}
    assert set(rows) == set(expected) | set(good)
    for name, reason in expected.items():
        assert rows[name]["status"] == "error" and reason in rows[name]["error"], (name, rows[name]["error"])
        assert rows[name]["order"] == "" and rows[name]["top_match_id"] == ""
    for name in good:
        assert rows[name]["status"] in ("ok", "novel") and rows[name]["top_match_id"], (name, rows[name])


@bundled
def test_identify_holds_one_batch_of_photos_at_a_time(tmp_path, monkeypatch, photo_identifier):
    from engine import identify_image

    for i in range(11):
        textured((200, 150), seed=i).save(tmp_path / f"p{i:02d}.jpg")
    live, peak = set(), []
    real_check = identify_image.check_photo

    def tracked(path, min_side=0):
        image, facts = real_check(path, min_side=min_side)
        live.add(id(image))
        weakref.finalize(image, live.discard, id(image))
        peak.append(len(live))
        return image, facts

    monkeypatch.setattr(identify_image, "check_photo", tracked)
    monkeypatch.setattr(identify_image, "PHOTO_BATCH", 4)
    results = photo_identifier.identify(sorted(tmp_path.glob("*.jpg")))
    assert [r.status for r in results].count("error") == 0 and len(results) == 11
    assert max(peak) == 4  # decoded photos never outlive their batch


class _PoisonedPreprocess:
    """The encoder's preprocessing, failing on chosen images as Pillow or numpy would."""

    def __init__(self, real: ImagePreprocess, poison: dict[int, BaseException]):
        self.real, self.poison = real, poison

    def __getattr__(self, name):
        return getattr(self.real, name)

    def batch(self, images):
        for image in images:
            if id(image) in self.poison:
                raise self.poison[id(image)]
        return self.real.batch(images)


@bundled
def test_match_isolates_the_photo_the_model_fails_on(monkeypatch, photo_identifier):
    photos = [textured((160, 120), seed=s) for s in range(5)]
    alone = [photo_identifier.match([p])[0] for p in (photos[0], photos[2], photos[4])]
    poison = {id(photos[1]): OSError("broken data stream when reading image file"), id(photos[3]): MemoryError()}
    monkeypatch.setattr(photo_identifier.encoder, "preprocess",
                        _PoisonedPreprocess(photo_identifier.encoder.preprocess, poison))
    results = photo_identifier.match(photos)
    assert isinstance(results[1], BioscanError) and not isinstance(results[1], TransientError)
    assert "OSError: broken data stream" in str(results[1])
    assert isinstance(results[3], TransientError) and is_transient(results[3])
    for got, want in zip([results[0], results[2], results[4]], alone):  # as if matched alone (the search's
        assert [m.record_id for m in got[1]] == [m.record_id for m in want[1]]  # float sums vary with batch shape)
        for rank, call in want[0].ranks.items():
            assert got[0].ranks[rank].name == call.name
            assert got[0].ranks[rank].confidence == pytest.approx(call.confidence, abs=1e-4)
    given = photo_identifier.encoder.embed(photos[:1] * 2)
    given[1] = np.nan
    assert isinstance(photo_identifier.match(photos[:2], embeddings=given)[1], BioscanError)


# ------------------------------------------------------------------------------ barcodes
@bundled
def test_a_huge_single_line_barcode_is_an_error_row_in_identify(tmp_path):
    from engine.cli import main
    from tests.synthetic import make_barcodes

    good = make_barcodes(genera=1, species_per_genus=1, records_per_species=1)[0]
    fasta = tmp_path / "assembly.fasta"
    fasta.write_text(f">contig1 a genome assembly on one line\n{'ACGTTGCA' * 1_500_000}\n"
                     f">{good.specimen_id}\n{good.sequence}\n")  # 12 MB: over the real 10,000 bp limit
    out = tmp_path / "results.csv"
    main(["identify", str(fasta), "--out", str(out), "--device", "cpu", "-q"])
    with open(out, newline="", encoding="utf-8") as fh:
        rows = {r["specimen_id"]: r for r in csv.DictReader(fh)}
    huge = rows["contig1"]
    assert huge["status"] == "error" and huge["species"] == "" and huge["top_match_id"] == ""
    assert huge["error"].startswith("12,000,000 bp: longer than any COI barcode (max 10,000 bp)")
    assert rows[good.specimen_id]["error"] == ""
