"""`bioscan train image`: fine-tune the photo encoder into the DNA embedding space.

Recipe (CPU-cheap: 2 cores, minutes):

* Backbone: ImageNet-pretrained EfficientNet-Lite0; stem and MBConv blocks frozen, their
  output cached once per photo and augmented view; the head convolution and a projection
  to the DNA model's 256-d space are trained.
* Taxonomy bridge: there are no photo+barcode pairs of the same specimen in our data, so a
  labelled photo is pulled towards the *DNA prototype* of its taxon - the normalised mean
  DNA embedding of the reference library's records of that family (or group of families,
  e.g. "bees", or order when only the order is known) - with an InfoNCE loss against every
  family and order prototype (CLIP with a fixed DNA side).
* True pairs, when a caller has them: the symmetric CLIP loss on (photo, barcode embedding)
  pairs of the same specimen (engine.train.image_model.clip_loss), as in BIOSCAN-CLIP.
* Unlabelled specimen photos: two augmented views of a photo should embed alike (NT-Xent).

Every photo goes through engine.models.image_preprocess.ImagePreprocess.to_array - the
function the ONNX encoder uses at inference - after PIL-level augmentation. The pack's
manifest records that config and the DNA model the space is aligned to.
"""
from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from engine.identify_image import DOMAIN_KEY, centred
from engine.io.images import LabelledPhoto, load_photo
from engine.models.image_preprocess import ImagePreprocess
from engine.models.pack import write_manifest

PACK_NAME = "bioscan-image-effnetlite0"
# int8 for the backbone's operators; the projection head's MatMul/Gemm stay fp32 (faster, and
# one uint8 scale for the whole 256-d output cost ~0.03 of embedding cosine)
INT8_OPS = ("Conv", "Clip", "Relu", "Add", "Mul", "Pad", "ReduceMean", "GlobalAveragePool")
# The stem and first block stay fp32: quantising them cost the most agreement on BIOSCAN specimen
# photos (cosine to fp32 0.955 -> 0.988 on 100 held-out specimen photos without them) and their
# 3- and 32-channel convolutions gain nothing from int8 (the model ran no slower).
INT8_FP32_WEIGHTS = ("backbone._conv_stem.", "backbone._blocks.0.")
# Groups a labels table may name instead of a family: the families they consist of.
GROUP_FAMILIES = {
    "bees": ("Andrenidae", "Apidae", "Colletidae", "Halictidae", "Megachilidae", "Melittidae", "Stenotritidae"),
}


@dataclass
class Prototypes:
    """Unit-length DNA prototypes of taxa: names like "family:Formicidae", "order:Diptera", "group:bees"."""

    names: list[str]
    matrix: np.ndarray  # (n, dim) float32
    taxonomy: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (order, family)
    center: np.ndarray | None = None  # the DNA space's centre the prototypes were taken from

    def index(self, name: str) -> int | None:
        try:
            return self.names.index(name)
        except ValueError:
            return None


def dna_prototypes(matrix: np.ndarray, taxonomy: Sequence, min_records: int = 3,
                   center: np.ndarray | None = None) -> Prototypes:
    """Mean DNA embedding of every family, order and group with enough records, minus
    ``center`` (default: the mean of all records), re-normalised."""
    groups: dict[str, list[int]] = {}
    tax: dict[str, tuple[str, str]] = {}
    for i, t in enumerate(taxonomy):
        if t.family:
            groups.setdefault(f"family:{t.family}", []).append(i)
            tax[f"family:{t.family}"] = (t.order, t.family)
        if t.order:
            groups.setdefault(f"order:{t.order}", []).append(i)
            tax[f"order:{t.order}"] = (t.order, "")
        for group, families in GROUP_FAMILIES.items():
            if t.family in families:
                groups.setdefault(f"group:{group}", []).append(i)
                tax[f"group:{group}"] = (t.order, "")
    names = sorted(n for n, rows in groups.items() if len(rows) >= min_records)
    center = matrix.mean(axis=0) if center is None else center
    m = centred(np.stack([matrix[groups[n]].mean(axis=0) for n in names]), center)
    return Prototypes(names, m, {n: tax[n] for n in names}, center.astype(np.float32))


def photo_target(photo: LabelledPhoto, protos: Prototypes) -> int | None:
    """The prototype a labelled photo is trained towards: its family, group, else order."""
    for name in (f"family:{photo.taxonomy.family}" if photo.taxonomy.family else "",
                 f"group:{photo.label}" if photo.label else "",
                 f"order:{photo.taxonomy.order}" if photo.taxonomy.order else ""):
        if name and (i := protos.index(name)) is not None:
            return i
    return None


HELD_OUT_MARKERS = ("val", "valid", "validation", "test")  # a source's own held-out split, in file names
# like val_x.jpg or Lasius_niger__validation__x.jpg
HELD_OUT_FRACTION = 0.15  # of each class, for sources that do not split their photos themselves
MIN_CLASS_PHOTOS = 5  # a class with fewer photos is never held out (e.g. the one example photo per order)


def photo_class(photo: LabelledPhoto) -> str:
    """The finest name a labelled photo has: species, else its label (a common name, "ants"), else
    genus, family, order; "" for an unlabelled photo. Photos of one class are one class in training."""
    t = photo.taxonomy
    if not t.order and not photo.label:
        return ""
    return t.species or (photo.label and f"{t.order}:{photo.label}") or t.genus or t.family or t.order


def _share(name: str, salt: str) -> float:
    """A stable number in [0, 1) from a file name: the same photo is always on the same side."""
    import hashlib

    return int(hashlib.sha1(f"{salt}:{name}".encode()).hexdigest()[:8], 16) / 2 ** 32


def _source_split(file_name: str) -> str:
    """"train", "val", ... when a file name carries its source's split (train_x.jpg, a__test__b.jpg)."""
    import re

    m = re.match(r"(train|val|valid|validation|test)_", file_name) or re.search(
        r"__(train|val|valid|validation|test)__", file_name)
    return m.group(1) if m else ""


def split_photos(photos: Sequence[LabelledPhoto], seed: int = 0, calibration_fraction: float = 0.15,
                 held_out_fraction: float = HELD_OUT_FRACTION):
    """(train, calibration, held_out) of labelled photos; unlabelled photos are all in train.

    Held out (never trained on, never a photo reference: the benchmark's photos): a source's own
    validation and test photos where its file names say so (``val_``, ``__validation__``, ...),
    else a stable ``held_out_fraction`` of each class of at least MIN_CLASS_PHOTOS photos, chosen
    by a hash of the file's path in its set. A stable ``calibration_fraction`` of the rest (with
    at least a family or group) calibrates calls and the domain score and is not trained on.
    ``seed`` varies the hashed choice.
    """
    sizes: dict[str, int] = {}
    for p in photos:
        sizes[photo_class(p)] = sizes.get(photo_class(p), 0) + 1
    train, calib, held = [], [], []
    for p in photos:
        cls, name = photo_class(p), f"{p.path.parent.name}/{p.path.name}"
        if not cls:
            train.append(p)
        elif _source_split(p.path.name) in HELD_OUT_MARKERS:
            held.append(p)
        elif (not _source_split(p.path.name) and sizes[cls] >= MIN_CLASS_PHOTOS
              and _share(name, f"held{seed}") < held_out_fraction):
            held.append(p)
        elif ((p.taxonomy.family or p.label in GROUP_FAMILIES) and sizes[cls] >= MIN_CLASS_PHOTOS
              and _share(name, f"calib{seed}") < calibration_fraction):
            calib.append(p)
        else:
            train.append(p)
    return train, calib, held


def augment(img, rng: np.random.Generator):
    """A random view: crop of 45-100 % of the area, flips, quarter turns, colour jitter."""
    from PIL import Image, ImageEnhance

    w, h = img.size
    area = w * h * rng.uniform(0.45, 1.0)
    ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    cw, ch = min(w, int(round(np.sqrt(area * ratio)))), min(h, int(round(np.sqrt(area / ratio))))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    img = img.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    if rng.random() < 0.25:
        img = img.transpose(Image.Transpose.ROTATE_90)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        img = enhancer(img).enhance(float(rng.uniform(0.75, 1.25)))
    return img


def _as_image(item):
    return load_photo(item) if isinstance(item, (str, Path)) else item


class _Trunk:
    """The frozen trunk as an ONNX Runtime session: ~3.5x faster than torch on this CPU, and the
    features are the same to 3e-5 (the trunk is what the exported model runs too)."""

    def __init__(self, model, size: int):
        import tempfile

        import torch

        from engine.models.runtime import create_session
        from engine.train.export import export_onnx

        class TrunkModule(torch.nn.Module):
            def __init__(self, embedder):
                super().__init__()
                self.embedder = embedder

            def forward(self, x):
                return self.embedder.trunk(x)

        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(TrunkModule(model), torch.zeros(2, 3, size, size), Path(tmp) / "trunk.onnx",
                               "image", "features", {0: "batch"})
            self.session = create_session(path, "cpu", threads=torch.get_num_threads())

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"image": x})[0]


def trunk_features(model, images: Sequence, pre: ImagePreprocess, views: int, rng: np.random.Generator,
                   batch: int = 32, log: Callable[[str], None] = print):
    """(n, 1 + views, C, h, w) float16 cached trunk outputs: view 0 is the plain photo."""
    import torch

    trunk = _Trunk(model, pre.size)
    cached = []
    t0 = time.time()
    for start in range(0, len(images), batch):
        imgs = [_as_image(x) for x in images[start: start + batch]]
        arrays = [[pre.to_array(img)] + [pre.to_array(augment(img, rng)) for _ in range(views)] for img in imgs]
        f = torch.from_numpy(trunk(np.stack(arrays).reshape(-1, 3, pre.size, pre.size)))
        cached.append(f.reshape(len(imgs), 1 + views, *f.shape[1:]).half())
        if start // batch % 20 == 0:
            log(f"  backbone features {min(start + batch, len(images))}/{len(images)} ({time.time() - t0:.0f} s)")
    return torch.cat(cached)


def _cached(cache_dir, paths, pre: ImagePreprocess, views: int, seed: int, compute, log):
    """Backbone features from ``cache_dir`` when the same photos, transform, views and seed
    were seen before (the frozen trunk does not depend on the DNA model), else computed."""
    if cache_dir is None:
        return compute()
    import hashlib
    import json

    import torch

    key = hashlib.sha256(json.dumps([[str(Path(p).resolve()) for p in paths], pre.config(), views, seed,
                                     "efficientnet-lite0"]).encode()).hexdigest()[:16]
    f = Path(cache_dir) / f"trunk-{key}.pt"
    if f.is_file():
        log(f"backbone features from {f}")
        return torch.load(f)
    feats = compute()
    f.parent.mkdir(parents=True, exist_ok=True)
    torch.save(feats, f)
    return feats


def train_image(
    photos: Sequence[LabelledPhoto],
    prototypes: Prototypes,
    out_dir: str | Path,
    aligned_to: dict,
    pairs: Sequence[tuple[object, np.ndarray]] = (),
    epochs: int = 30,
    views: int = 3,
    size: int = 224,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    threads: int = 0,
    version: str = "1.0.0",
    calibration_photos: Sequence[LabelledPhoto] = (),
    references=None,
    data_summary: dict | None = None,
    feature_cache: str | Path | None = None,
    features=None,
    supcon_weight: float = 1.0,
    tune_conv_head: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """Train the photo encoder and write a model pack (fp32 + int8 ONNX).

    ``photos`` with a taxon in ``prototypes`` are trained towards it, the rest only by view
    consistency; ``pairs`` are (photo or path, DNA embedding) of the same specimen (CLIP
    loss). ``aligned_to`` names the DNA model whose space this is (its library identity).
    ``calibration_photos`` (unseen in training) calibrate photo calls against
    ``references`` (the DNA references the prototypes came from); the result goes into the
    manifest, for libraries without photo references.
    """
    import torch

    from engine.train.export import export_onnx, int8_cosine, quantize_static_int8
    from engine.train.image_model import (BACKBONE, BACKBONE_LICENSE, ImageEmbedder, clip_loss,
                                          pretrained_backbone, prototype_loss, supervised_contrastive_loss,
                                          view_consistency_loss)

    t0 = time.time()
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pre = ImagePreprocess(size=size)
    model = ImageEmbedder(pretrained_backbone(), out_dim=prototypes.matrix.shape[1])
    model.eval()  # frozen trunk: batch-norm running statistics stay ImageNet's

    targets = [photo_target(p, prototypes) for p in photos]
    labelled = [i for i, t in enumerate(targets) if t is not None]
    log(f"{len(photos)} photos ({len(labelled)} with a DNA prototype), {len(pairs)} photo+barcode pairs")
    if features is None:
        features = _cached(feature_cache, [p.path for p in photos], pre, views, seed,
                           lambda: trunk_features(model, [p.path for p in photos], pre, views, rng, log=log), log)
    encode = model.top
    if not tune_conv_head:  # cache the pooled backbone output once; steps train the projection only
        model.freeze_conv_head()
        with torch.no_grad():
            feats = torch.cat([torch.stack([model.pooled(features[s: s + 256, v].float())
                                            for v in range(features.shape[1])], dim=1)
                               for s in range(0, len(features), 256)])
        encode = model.project
    else:
        feats = features
    y = torch.tensor([t if t is not None else -1 for t in targets])
    class_names = [photo_class(p) for p in photos]
    classes = sorted({c for c in class_names if c})
    class_index = {c: i for i, c in enumerate(classes)}
    cls = torch.tensor([class_index.get(c, -1) for c in class_names])
    members = [torch.tensor([i for i in labelled if cls[i] == k]) for k in range(len(classes))]
    members = [m for m in members if len(m)]
    # a class's chance to be in a batch: its order's (by the square root of the order's photos, so
    # the 190 Hymenoptera photos are not drowned by 4,700 Lepidoptera, nor the one-photo orders
    # weighed like either), shared equally among the order's classes
    class_order = [photos[int(m[0])].taxonomy.order for m in members]
    order_photos = {o: sum(len(m) for m, mo in zip(members, class_order) if mo == o) for o in set(class_order)}
    order_classes = {o: class_order.count(o) for o in order_photos}
    class_weight = torch.tensor([order_photos[o] ** 0.5 / order_classes[o] for o in class_order], dtype=torch.float)
    protos = torch.from_numpy(prototypes.matrix)
    pair_feats = trunk_features(model, [p for p, _ in pairs], pre, views, rng, log=log) if pairs else None
    pair_dna = torch.from_numpy(np.stack([e for _, e in pairs]).astype(np.float32)) if pairs else None

    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=1e-4)
    n_all = len(photos)
    # an epoch is a pass's worth of steps over all photos (the unlabelled ones train view consistency)
    steps_per_epoch = max(1, (max(n_all, len(pairs)) + batch_size - 1) // batch_size)
    total_steps = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total_steps,
                                                pct_start=max(0.1, 2.0 / total_steps))  # >= 1 warm-up step
    per_class = 4  # photos of each class in a batch: SupCon needs positives in it

    def class_batch() -> torch.Tensor:
        """batch_size / per_class classes, per_class photos of each (with replacement)."""
        if not members:
            return torch.zeros(0, dtype=torch.long)
        chosen = torch.multinomial(class_weight, max(1, batch_size // per_class), replacement=True)
        return torch.cat([members[k][torch.randint(0, len(members[k]), (per_class,))] for k in chosen.tolist()])

    def pick_view(f: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        v = torch.randint(0, f.shape[1], (len(idx),))
        return f[idx, v].float()

    # everything stays in eval mode, batch norms included: bn1's affine parameters train, but
    # its running statistics (momentum 0.01 in this port) would lag far behind batch statistics
    # in a few hundred steps, and the exported model would not be the one trained
    losses = []
    unlabelled = torch.tensor([i for i in range(n_all) if targets[i] is None], dtype=torch.long)
    for epoch in range(epochs):
        total = 0.0
        pair_perm = torch.randperm(len(pairs)) if pairs else None
        for s in range(steps_per_epoch):
            loss = torch.zeros(())
            idx = class_batch()
            if len(idx):
                emb = encode(pick_view(feats, idx))
                loss = loss + prototype_loss(emb, protos, y[idx]) + supcon_weight * supervised_contrastive_loss(emb, cls[idx])
            if pairs:
                pidx = pair_perm[s * batch_size: (s + 1) * batch_size]
                if len(pidx) > 1:
                    loss = loss + clip_loss(model.top(pick_view(pair_feats, pidx)), pair_dna[pidx])
            if views >= 2 and len(unlabelled) > 1:
                uidx = unlabelled[torch.randperm(len(unlabelled))[:batch_size // 2]]
                v = torch.stack([torch.randperm(views)[:2] + 1 for _ in uidx])
                a = encode(feats[uidx, v[:, 0]].float())
                b = encode(feats[uidx, v[:, 1]].float())
                loss = loss + 0.5 * view_consistency_loss(a, b)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        losses.append(total / steps_per_epoch)
        if epoch % 5 == 0 or epoch == epochs - 1:
            log(f"epoch {epoch + 1}/{epochs}: loss {losses[-1]:.3f} ({time.time() - t0:.0f} s)")
    model.eval()
    train_seconds = time.time() - t0

    example = torch.from_numpy(pre.batch([load_photo(photos[0].path), load_photo(photos[-1].path)]))
    fp32 = export_onnx(model, example, out / "model.fp32.onnx", "image", "unit_embedding", {0: "batch"})
    # calibrate on 128 photos, measure agreement on up to 64 others
    order = rng.permutation(len(photos))
    calib_arrays = pre.batch([load_photo(photos[i].path) for i in order[:128]])
    check_arrays = pre.batch([load_photo(photos[i].path) for i in (order[128:192] if len(order) > 128 else order)])
    quantize_static_int8(fp32, out / "model.int8.onnx", "image",
                         [calib_arrays[s: s + 16] for s in range(0, len(calib_arrays), 16)], op_types=INT8_OPS,
                         fp32_weights=INT8_FP32_WEIGHTS)
    agreement = int8_cosine(fp32, out / "model.int8.onnx", {"image": check_arrays})
    log(f"int8 vs fp32 cosine on {len(check_arrays)} photos not calibrated on: "
        f"mean {agreement['mean']:.4f}, min {agreement['min']:.4f}")

    manifest = {
        "name": PACK_NAME,
        "version": version,
        "modality": "image",
        "embedding_dim": int(prototypes.matrix.shape[1]),
        "files": [{"path": "model.int8.onnx", "precision": "int8"}, {"path": "model.fp32.onnx", "precision": "fp32"}],
        "input": {"name": "image", "dtype": "float32", "shape": ["batch", 3, size, size]},
        "output": {"name": "unit_embedding", "normalized": True},
        "preprocessing": pre.config(),
        "architecture": {"class": "ImageEmbedder", "backbone": BACKBONE, "trained": "conv_head, bn1, projection" if tune_conv_head else "projection",
                         "out_dim": int(prototypes.matrix.shape[1])},
        "aligned_to": aligned_to,
        "training": {
            "loss": f"InfoNCE to DNA taxon prototypes (T 0.07) + {supcon_weight} x SupCon over photo classes (T 0.1; "
                    "batches of 4 photos per class, orders drawn by the square root of their photos) + CLIP on true pairs + 0.5 x NT-Xent of unlabelled photos' views",
            "photo_classes": len(classes),
            "epochs": epochs, "views": views, "batch_size": batch_size, "lr": lr, "seed": seed,
            "photos": len(photos), "labelled_photos": len(labelled), "pairs": len(pairs),
            "prototypes": len(prototypes.names),
            "final_loss": round(losses[-1], 4) if losses else None,
            "seconds": round(train_seconds),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
            "int8_cosine_to_fp32": agreement,
            "int8": f"static QDQ ({', '.join(INT8_OPS)}), calibrated and bias-corrected on "
                    f"{len(calib_arrays)} photos; "
                    f"fp32: {', '.join(w.rstrip('.') for w in INT8_FP32_WEIGHTS)}",
            **(data_summary or {}),
        },
        "license": f"MIT for the trained head; backbone: {BACKBONE_LICENSE}",
    }
    pack = write_manifest(out, manifest)
    if calibration_photos:
        from engine.identify_image import calibrate_photo_calls
        from engine.models.image_encoder import ImageEncoder

        encoder = ImageEncoder(pack, precision="int8", device="cpu")
        emb = encoder.embed([load_photo(p.path) for p in calibration_photos])
        if references is not None:
            manifest["calibration"] = calibrate_photo_calls(
                emb, [p.taxonomy for p in calibration_photos], centred(references.matrix, prototypes.center),
                references.taxonomy)
            manifest["calibration"]["references"] = "dna"
        manifest[DOMAIN_KEY] = fit_pack_domain(encoder, photos, calibration_photos, emb, log)
        pack = write_manifest(out, manifest)
    return pack.path


def fit_pack_domain(encoder, train_photos: Sequence[LabelledPhoto], calibration_photos: Sequence[LabelledPhoto],
                    calibration_emb: np.ndarray, log: Callable[[str], None] = print) -> dict:
    """The pack's domain: centroids of the training photos' taxa (engine.identify_image.domain_prototypes)
    and the thresholds fit_domain finds on the calibration photos."""
    from engine.identify_image import DOMAIN_MIN_PHOTOS, domain_prototypes, fit_domain, pack_matrix

    labelled = [p for p in train_photos if p.taxonomy.order]
    emb = np.concatenate([encoder.embed([load_photo(p.path) for p in labelled[s: s + 256]])
                          for s in range(0, len(labelled), 256)]) if labelled else np.zeros((0, encoder.dim))
    protos, orders = domain_prototypes(emb, [p.taxonomy for p in labelled], [p.label for p in labelled])
    keep = [i for i, p in enumerate(calibration_photos) if p.taxonomy.order]
    domain = fit_domain(calibration_emb[keep], [calibration_photos[i].taxonomy.order for i in keep], protos, orders)
    log(f"domain: {len(protos)} taxon centroids from {len(labelled)} training photos; {domain}")
    domain["prototypes"] = pack_matrix(protos)
    domain["fit"].update(training_photos=len(labelled), min_photos_per_taxon=DOMAIN_MIN_PHOTOS,
                         score="best cosine to a centroid of the training photos of a taxon (any rank, or label)")
    return domain


def source_features(sources: Sequence[Sequence[LabelledPhoto]], size: int, views: int, seed: int,
                    feature_cache: str | Path | None, log: Callable[[str], None] = print):
    """Frozen-trunk features of every photo of every source (each source cached on its own, so a
    run that leaves a source out or splits it differently reuses the others), concatenated."""
    import torch

    from engine.train.image_model import ImageEmbedder, pretrained_backbone

    pre = ImagePreprocess(size=size)
    model = ImageEmbedder(pretrained_backbone())
    model.eval()
    out = []
    for photos in sources:
        paths = [p.path for p in photos]
        # a source's augmented views depend on the seed only, not on which sources come with it,
        # so a source's cached features are the ones a fresh run computes
        rng = np.random.default_rng([seed, 0])
        out.append(_cached(feature_cache, paths, pre, views, seed,
                           lambda paths=paths, rng=rng: trunk_features(model, paths, pre, views, rng, log=log), log))
    return torch.cat(out)


def train_image_from_folders(image_sources: Sequence[str | Path], library_path: str | Path, out_dir: str | Path,
                             log: Callable[[str], None] = print, **kwargs) -> Path:
    """Read labels tables, build DNA prototypes from a library, hold out and calibrate, train.

    The library's DNA model defines the space; the pack records it under ``aligned_to``
    so that photo-to-DNA matching refuses libraries embedded by any other model.
    """
    from engine.errors import LibraryError
    from engine.io.images import read_photo_labels
    from engine.library import ReferenceLibrary

    library = ReferenceLibrary.open(library_path)
    dna_model = library.model_for("dna")
    if dna_model is None:
        raise LibraryError(f"{Path(library_path).name} has no DNA references to align photos to")
    refs = library.references("dna")
    protos = dna_prototypes(refs.matrix, refs.taxonomy)
    sources = [read_photo_labels(src) for src in image_sources]
    photos = [p for src in sources for p in src]
    seed = kwargs.get("seed", 0)
    train, calib, held = split_photos(photos, seed=seed)
    log(f"{len(train)} training photos, {len(calib)} for calibration, {len(held)} held out")
    features = kwargs.pop("features", None)
    if features is None:
        features = source_features(sources, kwargs.get("size", 224), kwargs.get("views", 3), seed,
                                   kwargs.pop("feature_cache", None), log)
    else:
        kwargs.pop("feature_cache", None)
    row = {id(p): i for i, p in enumerate(photos)}
    features = features[[row[id(p)] for p in train]]
    summary = {"sources": [Path(s).name for s in image_sources], "held_out_photos": len(held),
               "calibration_photos": len(calib), "library": library.meta.get("name", ""),
               "split": "held out: the sources' own val/test photos, else a stable 15 % of each class of >= "
                        f"{MIN_CLASS_PHOTOS} photos (engine.train.image.split_photos, seed {seed}); calibration: "
                        "another 15 %"}
    aligned_to = dict(dna_model, center=[round(float(x), 6) for x in protos.center])
    return train_image(train, protos, out_dir, aligned_to=aligned_to, calibration_photos=calib,
                       references=refs, data_summary=summary, features=features, log=log, **kwargs)
