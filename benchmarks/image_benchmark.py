"""Image encoder benchmark: speed and int8 agreement, photo calls per set, out-of-domain honesty,
photo references, learning from barcoded photos, fused calls.

Needs the training output of `bioscan train image` (fp32 + int8; the bundled pack keeps int8
only), a library with the training part's photo references (resources/README.md, "Image model"),
and ../shared/data. Every photo scored was never trained on nor a reference: the held-out part of
each set (engine.train.image.split_photos), whole sets left out of training, BIOSCAN plate photos.

    .venv/bin/python benchmarks/image_benchmark.py --pack build/image-pack --library L \
        [--left-out PACK=SET,SET ...] [--section]

1. speed: images/s of the int8 and fp32 ONNX models on 2 CPU threads (batch 32); cosine between
   their embeddings on every set;
2. per set, against photo references and against DNA references only (the fallback): order right
   (of all photos), wrong order at >= 0.9 confidence, and per rank the calls' accuracy and coverage;
3. sets left out of training (``--left-out``: a pack trained without them): what it says about them;
4. learning from this sample: a library without Lepidoptera photo references gets half of
   lepidoptera_100's training photos as if barcode-identified (`add_photos`, named to species as a
   barcode call would); the held-out photos are the photo-only specimens, before and after;
5. fused calls on simulated specimens (no specimen in our data has both a photo and a barcode):
   held-out ant/bee photos paired with held-out barcodes of the same group, mix-ups the reverse,
   and BIOSCAN plate photos (outside the domain) paired with the same barcodes.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.dna_identify import write_section  # noqa: E402
from engine.io.images import load_photo, read_photo_labels  # noqa: E402
from engine.records import Barcode  # noqa: E402
from engine.train.image import GROUP_FAMILIES  # noqa: E402

BEES = set(GROUP_FAMILIES["bees"])
FUSED_RANKS = ("order", "family", "genus", "species")


# Variants of the int8 recipe tried on 2026-11-30 (onnxruntime 1.32, same fp32 model, 128 calibration
# photos; cosine on the 116 held-out ants/bees and on 100 specimen photos outside the calibration set):
QUANTISATION_NOTES = (
    "Recipe (engine/train/image.py, engine/train/export.py): static QDQ, per-channel int8 weights, uint8 "
    "activations, MinMax calibration on 128 training photos, the stem and first block left in fp32, then "
    "empirical bias correction (Nagel et al. 2019) on the same photos: each quantised convolution's bias, in "
    "graph order, absorbs its output channels' mean error. Bias correction only moves biases, so speed is "
    "unchanged; it lifted cosine to fp32 from 0.9985 to 0.9995 (ants/bees) and from 0.988 to 0.9964 "
    "(specimen photos), min 0.936 -> 0.972. Correcting every layer at once from one measurement "
    "over-corrects (cosine 0.48). "
    "Variants measured on the same fp32 model before bias correction (speed-up vs fp32 / cosine ants-bees / "
    "cosine specimens): everything int8 1.99x / 0.9976 / 0.955; stem + block 0 fp32 (shipped) 2.07-2.12x / "
    "0.9985 / 0.988; also blocks 1-3 fp32 1.29x / 0.9993 / 0.995; depthwise convolutions fp32 1.34x / 0.971 "
    "/ 0.657; percentile or entropy calibration, symmetric or int8 activations, QOperator format, fp32 pooling "
    "or head: no better than the shipped recipe (1.03-2.15x, specimens <= 0.988); per-tensor weights: same "
    "speed, specimens 0.851. "
    "Speed ceiling: profiled per batch of 32, the shipped int8 model spends 50 ms in int8 convolutions and "
    "21.5 ms in the fp32 stem and block 0 (fp32 model: 147 ms); quantising those too cuts the profile to "
    "65 ms but not the wall time (all-int8 1.74-2.09x against the shipped 1.84-2.14x at batches of 4, 8 and "
    "32): their 3- and 32-channel convolutions on 112x112 maps are memory-bound in either precision. No "
    "recipe measured on this CPU reaches 2.5x. The previous pack (everything int8) measured 2.39x in an "
    "earlier session, with fp32 at 194 images/s; on this session's machine fp32 runs at 250-285 images/s "
    "and the same recipe at 1.99-2.04x: the ratio moves with the host CPU.")


def throughput(path: Path, x: np.ndarray, threads: int = 2, seconds: float = 4.0) -> float:
    from engine.models.runtime import create_session

    sess = create_session(path, "cpu", threads=threads)
    name = sess.get_inputs()[0].name
    for _ in range(2):
        sess.run(None, {name: x})
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        sess.run(None, {name: x})
        n += len(x)
    return n / (time.perf_counter() - t0)


def group_of(family: str) -> str:
    return "bees" if family in BEES else family


def photo_truth(p) -> tuple[str, str]:
    """(order, family-or-group) of a held-out photo: ants are Formicidae, bees the bee group."""
    return p.taxonomy.order, p.taxonomy.family or p.label


CALL_RANKS = ("order", "family", "genus", "species")


def call_metrics(results, photos) -> dict:
    """Order right among all photos, wrong order at >= 0.9, and per rank accuracy / coverage of the
    calls (a rank scored only on photos labelled at it; a bee photo's family is right if a bee family)."""
    out = {"photos": len(photos)}
    ok = [r.call is not None for r in results]
    orders = [(r.call.name("order") if r.call else "", r.call.confidence("order") if r.call else 0.0, p.taxonomy.order)
              for r, p in zip(results, photos)]
    labelled = [o for o in orders if o[2]]
    if labelled:
        out["order right"] = float(np.mean([n == t for n, _, t in labelled]))
        out["wrong order >= 0.9"] = float(np.mean([bool(n) and n != t and c >= 0.9 for n, c, t in labelled]))
    for rank in CALL_RANKS:
        rows = []
        for r, p, good in zip(results, photos, ok):
            want = p.taxonomy.get(rank) or (p.label if rank == "family" and p.label == "bees" else "")
            if not want or not good:
                continue
            name = r.call.name(rank)
            rows.append((bool(name), (group_of(name) if want == "bees" else name) == want))
        if rows:
            called = [right for c, right in rows if c]
            out[f"{rank} coverage"] = len(called) / len(rows)
            out[f"{rank} accuracy"] = float(np.mean(called)) if called else float("nan")
    ants = [(r, p.taxonomy.family == "Formicidae") for r, p in zip(results, photos)
            if p.taxonomy.family == "Formicidae" or p.label == "bees"]
    if ants:  # the ants/bees set: is the nearest reference an ant (family Formicidae) or not
        out["ants vs bees (top match)"] = float(np.mean([bool(r.matches) and (r.matches[0].taxonomy.family == "Formicidae")
                                                         == a for r, a in ants]))
    out["no call (outside the domain)"] = float(np.mean([bool(r.call and r.call.reason) and not r.call.name("order")
                                                        for r in results]))
    return out


def metric_table(rows: list[tuple[str, dict]]) -> list[str]:
    keys = []
    for _, m in rows:
        keys += [k for k in m if k not in keys]
    lines = ["| set | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, m in rows:
        cells = [("" if k not in m else f"{m[k]:.3f}" if isinstance(m[k], float) else str(m[k])) for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def fused_metrics(dna_results, photo_results, pairs, photo_groups) -> tuple[dict, dict]:
    """Correct / wrong calls per rank, barcode alone and fused, and the disagreement flags:
    ``undetermined`` counts flags between a bee photo's bee family and a barcode of another
    bee family (the photos are labelled "bees" only, so whether they differ is unknown)."""
    from engine.fuse import fuse

    counts = {k: {r: [0, 0] for r in FUSED_RANKS} for k in ("dna", "fused")}  # rank -> [correct, wrong]
    flags = undetermined = 0
    for (bi, pi) in pairs:
        d, p = dna_results[bi], photo_results[pi]
        truth = d[2]
        f = fuse((d[0], d[1]), (p.call, p.matches))
        flags += f.disagreement
        undetermined += (f.disagreement and f.disagreement_rank == "family" and photo_groups[pi] == "bees"
                         and group_of(p.call.name("family")) == "bees" and group_of(truth.family) == "bees")
        for kind, call in (("dna", d[0]), ("fused", f.call)):
            for rank in FUSED_RANKS:
                name = call.name(rank)
                if name:
                    counts[kind][rank][0 if name == truth.get(rank) else 1] += 1
    return counts, {"pairs": len(pairs), "flagged": flags, "undetermined": undetermined}


SETS = ("hymenoptera_ants_bees", "lepidoptera_100", "leeds_butterflies", "antweb_ants")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pack", default=str(REPO / "build" / "image-pack"), help="`bioscan train image --out` folder")
    ap.add_argument("--library", help="library with the training photos as references (default: the bundled one)")
    ap.add_argument("--dna-library", help="the library without photo references (default: --library's DNA part)")
    ap.add_argument("--left-out", nargs="*", default=[], metavar="PACK=SET,SET",
                    help="packs trained without the sets named, to score on those sets")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--section", action="store_true", help="write the results into docs/benchmarks.md")
    ap.add_argument("--limit", type=int, default=0, help="at most this many photos a set (a quick check of the script)")
    args = ap.parse_args()

    from engine.identify_image import ImageIdentifier, add_photos
    from engine.library import ReferenceLibrary
    from engine.models.image_encoder import ImageEncoder
    from engine.models.pack import load_pack
    from engine.resources import default_library_path
    from engine.train.image import split_photos

    data = Path(args.data) / "images"
    library_path = Path(args.library) if args.library else default_library_path()
    pack = load_pack(args.pack)
    held = {s: _unique(split_photos(read_photo_labels(data / s))[2]) for s in SETS}
    held["ami_moth_trap (crops, never trained)"] = [p for p in read_photo_labels(data / "ami_moth_trap") if p.taxonomy.order]
    plates = sorted((data / "bioscan5m_specimens_unlabeled").glob("*.jpg"))
    if args.limit:
        held = {k: v[:: max(1, len(v) // args.limit)][: args.limit] for k, v in held.items()}
        plates = plates[: args.limit]
    tr = pack.manifest.get("training", {})
    lines = [f"Pack `{pack.ident}` (int8 sha256 {pack.model_file('int8')['sha256'][:12]}…; trained on "
             f"{tr.get('photos')} photos of {tr.get('photo_classes')} classes from {', '.join(tr.get('sources', []))} "
             f"in {tr.get('seconds')} s, {tr.get('machine')}), library `{library_path.name}`. Scored photos were "
             "never trained on nor references: " + ", ".join(f"{k} {len(v)}" for k, v in held.items())
             + f", and {len(plates)} BIOSCAN plate photos (no labels: every one is outside the trained domain)."]

    # 1. speed and agreement on every set (the bundled pack keeps int8 only: no fp32 to compare with)
    enc8 = ImageEncoder(pack, "int8", device="cpu")
    images = {k: [load_photo(p.path) for p in v] for k, v in held.items()}
    images["BIOSCAN plate photos"] = [load_photo(p) for p in plates]
    x = enc8.preprocess.batch(images["lepidoptera_100"][:32])
    if "fp32" in {e["precision"] for e in pack.files}:
        enc32 = ImageEncoder(pack, "fp32", device="cpu")
        rounds = [(throughput(pack.model_path("fp32"), x), throughput(pack.model_path("int8"), x)) for _ in range(3)]
        fps32, fps8 = max(r[0] for r in rounds), max(r[1] for r in rounds)  # best of 3 alternating rounds
        lines += ["", f"Speed (2 threads, batch 32, best of 3): fp32 {fps32:.1f} images/s, int8 {fps8:.1f} images/s "
                  f"(**{fps8 / fps32:.2f}x**).", "", "| set | int8 cosine to fp32, mean | min |", "|---|---|---|"]
        for k, ims in images.items():
            cos = (enc32.embed(ims) * enc8.embed(ims)).sum(1)
            lines.append(f"| {k} | {cos.mean():.4f} | {cos.min():.4f} |")
        lines += ["", QUANTISATION_NOTES]
    else:
        fps8 = max(throughput(pack.model_path("int8"), x) for _ in range(3))
        lines += ["", f"Speed (2 threads, batch 32, best of 3): int8 {fps8:.1f} images/s. The pack keeps no fp32 "
                  "model, so neither the speed-up over fp32 nor the int8 cosine is measured here (`bioscan train "
                  "image --out` writes both)."]
    print("\n".join(lines), flush=True)

    # 2. calls per set, photo references vs DNA references only
    library = ReferenceLibrary.open(library_path)
    with_refs = ImageIdentifier(library, enc8)
    dna_path = Path(args.dna_library) if args.dna_library else None
    tmp = tempfile.TemporaryDirectory()
    if dna_path is None:  # the same library without its photo references
        dna_path = Path(tmp.name) / "dna-only.db"
        shutil.copy(library_path, dna_path)
        lib = ReferenceLibrary.open_writable(dna_path)
        lib.db.execute("DELETE FROM refs WHERE modality = 'image'")
        lib.db.conn.commit()
        lib.close()
    dna_only = ImageIdentifier(ReferenceLibrary.open(dna_path), enc8)
    rows = []
    for k, v in held.items():
        rows.append((f"{k} vs {library.count('image')} photo refs", call_metrics(_as_rows(with_refs.match(images[k])), v)))
        rows.append((f"{k} vs DNA refs only", call_metrics(_as_rows(dna_only.match(images[k])), v)))
    plate_calls = [r for r in with_refs.match(images["BIOSCAN plate photos"]) if not isinstance(r, Exception)]
    plate_dna = [r for r in dna_only.match(images["BIOSCAN plate photos"]) if not isinstance(r, Exception)]
    lines += ["", f"Calls (`ImageIdentifier.match`, references `{with_refs.reference_modality}` first, DNA as the "
              "fallback). `order right` is of all photos (a photo with no call is not right):", ""]
    lines += metric_table(rows)
    lines += ["", f"BIOSCAN plate photos: an order called for {np.mean([bool(c.name('order')) for c, _ in plate_calls]):.3f} "
              f"with photo references, {np.mean([bool(c.name('order')) for c, _ in plate_dna]):.3f} against DNA only; "
              f"flagged novel: {sum(c.novel for c, _ in plate_calls + plate_dna)}."]
    print("\n".join(lines[-len(rows) - 5:]), flush=True)

    # 3. sets left out of training
    if args.left_out:
        lines += ["", "Sets left out of training (a pack trained without them, DNA references only, as a library "
                  "without their photos would be):", ""]
        lrows = []
        for spec in args.left_out:
            lpath, sets = spec.split("=")
            lpack = load_pack(lpath)
            lident = ImageIdentifier(ReferenceLibrary.open(dna_path), ImageEncoder(lpack, "int8", device="cpu"))
            fit = lpack.manifest.get("domain", {}).get("fit", {})
            for sname in sets.split(","):
                photos = [p for p in read_photo_labels(data / sname) if p.taxonomy.order][: args.limit or None]
                res = lident.match([load_photo(p.path) for p in photos])
                lrows.append((f"{sname} (pack knows {', '.join(fit.get('orders', []))})",
                              call_metrics(_as_rows(res), photos)))
        lines += metric_table(lrows)

    # 4. learning from this sample
    lep_train = _unique(split_photos(read_photo_labels(data / "lepidoptera_100"))[0])
    barcoded = lep_train[::2][: args.limit or None]
    sample = Path(tmp.name) / "lab.db"
    shutil.copy(dna_path, sample)
    lab = ReferenceLibrary.open_writable(sample)
    for k in ("hymenoptera_ants_bees", "antweb_ants"):
        add_photos(lab, split_photos(read_photo_labels(data / k))[0], enc8)
    before = call_metrics(_as_rows(ImageIdentifier(ReferenceLibrary.open(sample), enc8).match(
        images["lepidoptera_100"])), held["lepidoptera_100"])
    added, _ = add_photos(lab, barcoded, enc8)
    lab.close()
    after = call_metrics(_as_rows(ImageIdentifier(ReferenceLibrary.open(sample), enc8).match(
        images["lepidoptera_100"])), held["lepidoptera_100"])
    lines += ["", f"Learning from this sample: {added} of lepidoptera_100's training photos (every other one) added as "
              "if barcode-identified to species; the held-out photos as photo-only specimens:", ""]
    lines += metric_table([("no Lepidoptera photo references (DNA fallback)", before),
                           (f"+ {added} barcoded photos", after)])
    print("\n".join(lines[-5:]), flush=True)

    # 5. fused calls
    lines += fused_section(args, library_path, held["hymenoptera_ants_bees"], with_refs.match(
        images["hymenoptera_ants_bees"]), plate_calls)
    text = "\n".join(lines)
    print(text)
    if args.section:
        write_section("Image encoder", text + "\n\nCommand: `.venv/bin/python benchmarks/image_benchmark.py "
                      f"--pack {args.pack} --library {args.library} --left-out {' '.join(args.left_out)} --section` "
                      "(after `bioscan train image` and `library build --images`, see resources/README.md).")
    tmp.cleanup()
    return 0


def _unique(photos):
    """Photos once each: lepidoptera_100's labels table names 84 files twice (a valid and a test row)."""
    seen = set()
    return [p for p in photos if not (p.path in seen or seen.add(p.path))]


class _Row:
    def __init__(self, result):
        self.call = None if isinstance(result, Exception) else result[0]
        self.matches = [] if isinstance(result, Exception) else result[1]


def _as_rows(results):
    return [_Row(r) for r in results]


def fused_section(args, library_path, photos, photo_results, plate_calls) -> list[str]:
    """Simulated specimens: held-out barcodes of ants and bees paired with held-out photos of the
    same group (and the other group: mix-ups), and with BIOSCAN plate photos (outside the domain)."""
    from engine.identify import open_identifier
    from engine.io import read_barcodes
    from engine.qc import check_barcode
    from engine.train.split import benchmark_split

    data = Path(args.data)
    truth = [photo_truth(p) for p in photos]
    rows = [_Row(r) for r in photo_results]
    recs = [r for r in read_barcodes(data / "barcodes.tsv") if isinstance(r, Barcode) and r.taxonomy]
    split = benchmark_split(recs)
    queries = [r for r in split.known_queries + split.novel_queries
               if r.taxonomy.family == "Formicidae" or r.taxonomy.family in BEES][: args.limit * 4 or None]
    dna_ident = open_identifier(library_path)
    clean = [(r, check_barcode(r.sequence)) for r in queries]
    clean = [(r, qc.sequence) for r, qc in clean if qc.ok]
    dna_results = [(c, m, r.taxonomy) for (r, _), (c, m) in zip(clean, dna_ident.match([s for _, s in clean]))]
    ants_b = [i for i, (_, _, t) in enumerate(dna_results) if t.family == "Formicidae"]
    bees_b = [i for i, (_, _, t) in enumerate(dna_results) if t.family in BEES]
    ants_p = [i for i, t in enumerate(truth) if t[1] == "Formicidae"]
    bees_p = [i for i, t in enumerate(truth) if t[1] == "bees"]

    def pair(barcodes, pics):
        return [(b, pics[i % len(pics)]) for i, b in enumerate(barcodes)]

    matched = pair(ants_b, ants_p) + pair(bees_b, bees_p)
    mixed = pair(ants_b, bees_p) + pair(bees_b, ants_p)
    groups = [t[1] for t in truth]
    counts, agree = fused_metrics(dna_results, rows, matched, groups)
    _, mix = fused_metrics(dna_results, rows, mixed, groups)
    from engine.fuse import fuse

    plates = [(b, i % len(plate_calls)) for i, b in enumerate(ants_b + bees_b)]
    unchanged = sum(all(fuse((dna_results[b][0], dna_results[b][1]), (plate_calls[p][0], [])).call.confidence(r)
                        == dna_results[b][0].confidence(r) for r in FUSED_RANKS) for b, p in plates)
    lines = ["", f"Simulated specimens: {len(matched)} held-out barcodes (benchmark_split queries of Formicidae "
             f"and bee families: {len(ants_b)} ants, {len(bees_b)} bees) each paired with a held-out photo of the "
             "same group. Correct / wrong calls per rank:", "",
             "| calls | " + " | ".join(FUSED_RANKS) + " |", "|---" * (len(FUSED_RANKS) + 1) + "|"]
    for kind in ("dna", "fused"):
        label = "barcode alone" if kind == "dna" else "barcode + photo (fused)"
        lines.append(f"| {label} | " + " | ".join(f"{c} / {w}" for c, w in (counts[kind][r] for r in FUSED_RANKS))
                     + " |")
    lines += ["", f"Disagreement flag: {agree['flagged'] - agree['undetermined']} false alarms among {agree['pairs']} "
              f"specimens paired within their group, plus {agree['undetermined']} undetermined (bee photos are "
              f"labelled 'bees' only); {mix['flagged']} of {mix['pairs']} simulated mix-ups caught. The same barcodes "
              f"paired with BIOSCAN plate photos (outside the domain): {unchanged} of {len(plates)} fused calls keep "
              "the barcode's confidences exactly."]
    return lines


if __name__ == "__main__":
    sys.exit(main())
