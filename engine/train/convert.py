"""`bioscan models import` / `models quantize`: checkpoints a user has -> model packs.

Kinds (CHECKPOINT_DIR as the framework saves it; nothing is downloaded):

* ``barcodebert``: a Hugging Face BERT checkpoint (config.json + model.safetensors or
  pytorch_model.bin, e.g. BertForMaskedLM) over non-overlapping DNA k-mers, as BarcodeBERT.
  k is read from vocab.txt when present, else from the vocabulary size (4^k k-mers after
  [MASK]=0, [UNK]=1, BarcodeBERT's layout). Embedding: mean of the last hidden states over
  the non-padding tokens, L2-normalised; tokenizer kind ``dna-kmer-bert``.
* ``hf-vit``: a Hugging Face ViTModel checkpoint (+ preprocessor_config.json for the mean,
  std and size). Embedding: the final [CLS] hidden state, L2-normalised.
* ``open-clip``: an open_clip checkpoint (open_clip_config.json + open_clip_pytorch_model.bin
  or open_clip_model.safetensors), e.g. ViT-B-16 as BioCLIP ships it. The image tower is
  rebuilt by engine.train.convert_models.OpenClipVisual from the state dict's ``visual.*``
  keys (open_clip itself is not installed: it needs torchvision, which needs a CUDA torch).
  Embedding: the projected [CLS] token, L2-normalised (the CLIP image embedding).

Every conversion checks the exported ONNX model against the framework's own output and
records the largest difference in the manifest; int8 is dynamic (weights) quantisation,
which suits these MatMul-heavy transformers.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from engine.errors import ModelPackError
from engine.models.pack import load_pack, write_manifest

KINDS = ("barcodebert", "hf-vit", "open-clip")
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
ONNX_TOLERANCE = 1e-3


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelPackError(f"{path}: unreadable ({exc})") from exc


def _bert_tokenizer(src: Path, config):
    from engine.models.dna_tokenizer import BertKmerTokenizer

    vocab_file = src / "vocab.txt"
    if vocab_file.is_file():
        vocab = vocab_file.read_text(encoding="utf-8").split()
        kmers = [i for i, t in enumerate(vocab) if set(t) <= set("ACGT") and t]
        if not kmers:
            raise ModelPackError(f"{vocab_file}: no DNA k-mers in the vocabulary")
        k = len(vocab[kmers[0]])
        offset = kmers[0]
        import itertools

        expected = ["".join(p) for p in itertools.product("ACGT", repeat=k)]
        if vocab[offset: offset + len(expected)] != expected:
            raise ModelPackError(f"{vocab_file}: k-mers are not in A,C,G,T product order from id {offset}")
        ids = {t: i for i, t in enumerate(vocab)}
        unk = ids.get("[UNK]", ids.get("<unk>"))
        pad = ids.get("[PAD]", ids.get("[MASK]", 0))
        cls_id, sep_id = ids.get("[CLS]", -1), ids.get("[SEP]", -1)
        if unk is None:
            raise ModelPackError(f"{vocab_file}: no [UNK] token")
    else:
        k = round(math.log(max(config.vocab_size - 2, 1), 4))
        if 4**k + 2 != config.vocab_size:
            raise ModelPackError(
                f"{src}: a vocabulary of {config.vocab_size} is not 4^k k-mers after [MASK], [UNK] "
                "(BarcodeBERT's layout); put the checkpoint's vocab.txt beside it")
        offset, unk, pad, cls_id, sep_id = 2, 1, 0, -1, -1
    framing = (cls_id >= 0) + (sep_id >= 0)
    max_len = min(660, (config.max_position_embeddings - framing) * k)
    return BertKmerTokenizer(k=k, max_len=max_len, kmer_offset=offset, unk_id=unk, pad_id=pad,
                             cls_id=cls_id, sep_id=sep_id)


def _load_state_dict(src: Path, names: Sequence[str]) -> dict:
    import torch

    for name in names:
        f = src / name
        if not f.is_file():
            continue
        if f.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(f))
        else:
            sd = torch.load(f, map_location="cpu", weights_only=True)
        sd = sd.get("state_dict", sd)
        return {k.removeprefix("module."): v for k, v in sd.items()}
    raise ModelPackError(f"{src}: none of {', '.join(names)} found")


def _build(kind: str, src: Path):
    """(torch module, example input, modality, preprocessing config, embedding dim, info)."""
    import torch

    from engine.models.image_preprocess import ImagePreprocess
    from engine.train import convert_models as cm

    if kind == "barcodebert":
        from transformers import BertConfig, BertModel

        config = BertConfig.from_pretrained(src)
        tok = _bert_tokenizer(src, config)
        bert = BertModel.from_pretrained(src, add_pooling_layer=False, attn_implementation="eager")
        model = cm.BertMeanEmbedder(bert, tok.pad_id)
        rng = np.random.default_rng(0)
        seqs = ["".join(rng.choice(list("ACGT"), size=n)) for n in (tok.max_len, tok.max_len // 2)]
        example = torch.from_numpy(tok.encode_batch(seqs))
        return model, example, "dna", tok.config(), config.hidden_size, {"tokens": "tokens"}
    if kind == "hf-vit":
        from transformers import ViTConfig, ViTModel

        config = ViTConfig.from_pretrained(src)
        proc = _read_json(src / "preprocessor_config.json") if (src / "preprocessor_config.json").is_file() else {}
        mean = proc.get("image_mean", [0.5, 0.5, 0.5])
        std = proc.get("image_std", [0.5, 0.5, 0.5])
        size = config.image_size
        vit = ViTModel.from_pretrained(src, add_pooling_layer=False, attn_implementation="eager")
        model = cm.ViTClsEmbedder(vit)
        pre = ImagePreprocess(size=size, resample="bilinear", offset=tuple(255.0 * m for m in mean),
                              scale=tuple(255.0 * s for s in std))
        return model, torch.randn(2, 3, size, size), "image", pre.config(), config.hidden_size, {}
    if kind == "open-clip":
        cfg_file = src / "open_clip_config.json"
        if not cfg_file.is_file():
            raise ModelPackError(f"{src}: no open_clip_config.json (an open_clip checkpoint folder has one)")
        cfg = _read_json(cfg_file)
        model_cfg = cfg.get("model_cfg", cfg)
        pre_cfg = cfg.get("preprocess_cfg", {})
        sd = _load_state_dict(src, ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.pt",
                                    "pytorch_model.bin"))
        visual = cm.OpenClipVisual.from_state_dict(sd, model_cfg)
        mean = pre_cfg.get("mean", OPENAI_CLIP_MEAN)
        std = pre_cfg.get("std", OPENAI_CLIP_STD)
        size = visual.image_size
        pre = ImagePreprocess(size=size, resample="bicubic", offset=tuple(255.0 * m for m in mean),
                              scale=tuple(255.0 * s for s in std))
        return cm.Normalized(visual), torch.randn(2, 3, size, size), "image", pre.config(), visual.output_dim, {}
    raise ModelPackError(f"unknown checkpoint kind {kind!r} (choose from {', '.join(KINDS)})")


def convert_checkpoint(kind: str, src: str | Path, out: str | Path, name: str = "", version: str = "1.0.0",
                       log: Callable[[str], None] = print) -> Path:
    """Convert a checkpoint folder into a model pack (fp32 + int8 ONNX + manifest)."""
    import torch

    from engine.train.export import export_onnx, int8_cosine, quantize_dynamic_int8

    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise ModelPackError(f"{src}: not a checkpoint folder")
    model, example, modality, preprocessing, dim, _ = _build(kind, src)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    input_name = "tokens" if modality == "dna" else "image"
    axes = {0: "batch", 1: "length"} if modality == "dna" else {0: "batch"}
    fp32 = export_onnx(model, example, out / "model.fp32.onnx", input_name, "unit_embedding", axes)
    with torch.no_grad():
        reference = model(example).numpy()
    from engine.models.runtime import create_session

    got = create_session(fp32, "cpu").run(None, {input_name: example.numpy()})[0]
    diff = float(np.abs(got - reference).max())
    log(f"ONNX vs {kind} framework output: max |difference| {diff:.2e}")
    if diff > ONNX_TOLERANCE:
        raise ModelPackError(f"exported model differs from the checkpoint by {diff:.2e} (> {ONNX_TOLERANCE})")
    quantize_dynamic_int8(fp32, out / "model.int8.onnx")
    agreement = int8_cosine(fp32, out / "model.int8.onnx", {input_name: example.numpy()})
    log(f"int8 vs fp32 cosine: mean {agreement['mean']:.4f}, min {agreement['min']:.4f}")
    return write_manifest(out, {
        "name": name or f"{kind}-{src.name}",
        "version": version,
        "modality": modality,
        "embedding_dim": int(dim),
        "files": [{"path": "model.int8.onnx", "precision": "int8"}, {"path": "model.fp32.onnx", "precision": "fp32"}],
        "input": {"name": input_name, "dtype": "int64" if modality == "dna" else "float32"},
        "output": {"name": "unit_embedding", "normalized": True},
        "preprocessing": preprocessing,
        "conversion": {"kind": kind, "source": src.name, "onnx_max_abs_diff": diff,
                       "int8": "dynamic (weights)", "int8_cosine_to_fp32": agreement},
        "license": "as the source checkpoint's licence",
    }).path


def quantize_pack(pack_dir: str | Path, photos: Sequence[Path] = (), log: Callable[[str], None] = print) -> Path:
    """Add an int8 model to a pack that has only fp32.

    Image packs with calibration photos get static QDQ int8 (activations calibrated on the
    photos: the fast kind for convolutions); everything else dynamic (weights-only) int8.
    """
    from engine.io.images import load_photo
    from engine.models.image_preprocess import ImagePreprocess
    from engine.train.export import int8_cosine, quantize_dynamic_int8, quantize_static_int8

    pack = load_pack(pack_dir)
    if any(f["precision"] == "int8" for f in pack.files):
        raise ModelPackError(f"model pack {pack.ident} already has an int8 model")
    fp32 = pack.model_path("fp32")
    int8 = pack.path / "model.int8.onnx"
    if pack.modality == "image" and photos:
        pre = ImagePreprocess.from_config(pack.preprocessing)
        x = pre.batch([load_photo(p) for p in photos[:128]])
        quantize_static_int8(fp32, int8, pack.input_name, [x[s: s + 16] for s in range(0, len(x), 16)])
        method, sample = f"static QDQ, calibrated and bias-corrected on {len(x)} photos", x[:32]
    else:
        quantize_dynamic_int8(fp32, int8)
        method = "dynamic (weights)"
        if pack.modality == "dna":
            from engine.models.dna_tokenizer import tokenizer_from_config

            rng = np.random.default_rng(0)
            sample = tokenizer_from_config(pack.preprocessing).encode_batch(
                ["".join(rng.choice(list("ACGT"), size=658)) for _ in range(8)])
        else:
            size = int(pack.preprocessing.get("size", 224))
            sample = np.random.default_rng(0).normal(size=(4, 3, size, size)).astype(np.float32)
    agreement = int8_cosine(fp32, int8, {pack.input_name: sample})
    log(f"int8 ({method}) vs fp32 cosine: mean {agreement['mean']:.4f}, min {agreement['min']:.4f}")
    manifest = dict(pack.manifest)
    manifest["files"] = [{"path": int8.name, "precision": "int8"}] + [dict(f) for f in pack.files]
    manifest["quantization"] = {"int8": method, "int8_cosine_to_fp32": agreement}
    return write_manifest(pack.path, manifest).path
