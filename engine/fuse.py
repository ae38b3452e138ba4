"""One call for a specimen that has both a barcode and a photo.

``fuse(dna, image)`` is a pure function of the two modalities' (Call, [Match]) results.
How the evidence is combined, rank by rank (order, family, genus, species, BIN):

* both name the same taxon: the calls are treated as independent evidence and their
  confidences combine as a noisy-OR, 1 - (1 - p_dna)(1 - p_photo);
* both name taxa and they differ: the barcode's name is kept - a COI barcode resolves
  taxa far better than a photo and is the reference the photo model was aligned to -
  but its confidence becomes the posterior that the barcode is the one that is right when
  exactly one of two independent calls is, p_dna (1 - p_photo) / (p_dna (1 - p_photo) +
  (1 - p_dna) p_photo); the specimen is flagged ``disagreement`` at the coarsest such
  rank, which is what a lab mix-up (photo and tube of different specimens) looks like;
* only the barcode names it: kept as is;
* only the photo names it: left empty. Photo calls matched against barcode references
  (cross-modal) are still weak (docs/benchmarks.md, "Image encoder"), and in the simulated
  specimens letting them fill ranks the barcode left open added wrong calls; the photo's
  call stands alone only when there is no barcode call at all.

* a photo outside the image model's domain (engine.identify_image: it names no rank, or only
  the coarse ranks its domain score supports) neither raises nor lowers the barcode's
  confidence at the ranks it leaves empty; a photo naming nothing leaves the barcode's call
  exactly as it is.

So a fused call names exactly what the barcode called; the photo raises or lowers the
confidences and raises the disagreement flag.
Matches are the barcode's (the photo's when there is no barcode call).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from engine.records import RANKS, Call, Match, RankCall


@dataclass
class FusedCall:
    call: Call
    matches: list[Match]
    disagreement: bool = False
    disagreement_rank: str = ""  # coarsest rank where photo and barcode name different taxa
    sources: dict[str, str] = field(default_factory=dict)  # rank -> "dna" | "image" | "dna+image"

    @property
    def flags(self) -> list[str]:
        return [f"photo_disagrees_at_{self.disagreement_rank}"] if self.disagreement else []


def fuse(dna: tuple[Call, list[Match]] | None, image: tuple[Call, list[Match]] | None) -> FusedCall:
    """Combine a barcode's and a photo's results for the same specimen (either may be None)."""
    if dna is None and image is None:
        raise ValueError("fuse needs at least one of a DNA and an image result")
    if image is None:
        return FusedCall(dna[0], list(dna[1]), sources={r: "dna" for r in RANKS if dna[0].name(r)})
    if dna is None:
        return FusedCall(image[0], list(image[1]), sources={r: "image" for r in RANKS if image[0].name(r)})
    d, im = dna[0], image[0]
    if not any(im.name(r) for r in RANKS):  # e.g. a photo outside the model's domain: no evidence
        return FusedCall(d, list(dna[1]), sources={r: "dna" for r in RANKS if d.name(r)})
    ranks: dict[str, RankCall] = {}
    sources: dict[str, str] = {}
    disagreement_rank = ""
    for rank in RANKS:
        dn, pd = d.name(rank), d.confidence(rank)
        iname, pi = im.name(rank), im.confidence(rank)
        if dn and iname and dn == iname:
            ranks[rank] = RankCall(rank, dn, 1.0 - (1.0 - pd) * (1.0 - pi))
            sources[rank] = "dna+image"
        elif dn and iname:
            disagreement_rank = disagreement_rank or rank
            denom = pd * (1.0 - pi) + (1.0 - pd) * pi
            ranks[rank] = RankCall(rank, dn, pd * (1.0 - pi) / denom if denom > 0 else pd)
            sources[rank] = "dna"
        elif dn:
            ranks[rank] = RankCall(rank, dn, pd)
            sources[rank] = "dna"
        else:
            ranks[rank] = RankCall(rank, "", pd)
    call = Call(ranks, novel=d.novel, novel_rank=d.novel_rank)
    return FusedCall(call, list(dna[1]), bool(disagreement_rank), disagreement_rank, sources)
