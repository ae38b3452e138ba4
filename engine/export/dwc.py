"""A project as a Darwin Core Archive (DwC-A) for GBIF: meta.xml + occurrence.txt + eml.xml in a zip.

One occurrence per specimen that has data (error-only specimens, which are unreadable files
rather than specimens, are left out). The identification is the effective call: the user's
override when there is one (identifiedBy = the reviewer, dateIdentified = the review's time,
the machine call and its models in identificationRemarks), else the machine call (identifiedBy =
the models and library that made this call, from the import run of the items that made it
(engine.export.provenance); dateIdentified = when that run wrote the call). An override name
the library does not know is marked (identificationVerificationStatus "unverified name",
taxonRemarks). Review notes go in occurrenceRemarks; photo/barcode disagreements and barcode
conflicts in identificationRemarks.

identificationQualifier: "aff." when the specimen looks new (no close reference: it has
affinity with, but is probably not, the named taxon), "cf." when the machine's confidence
at the named rank is below CONFIDENT, else empty.
"""
from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from engine.atomic import atomic_output
from engine.export.provenance import flag_remarks, machine_identified_by, notes_text, unverified_text, with_provenance
from engine.project import SpecimenFilter

DWC = "http://rs.tdwg.org/dwc/terms/"
DC = "http://purl.org/dc/terms/"
CONFIDENT = 0.9
# (term namespace, term) in column order; occurrenceID is the row id (index 0)
OCCURRENCE_TERMS: list[tuple[str, str]] = [
    (DWC, "occurrenceID"), (DWC, "basisOfRecord"), (DWC, "catalogNumber"), (DWC, "otherCatalogNumbers"),
    (DWC, "scientificName"), (DWC, "taxonRank"), (DWC, "kingdom"), (DWC, "phylum"), (DWC, "class"),
    (DWC, "order"), (DWC, "family"), (DWC, "genus"), (DWC, "specificEpithet"),
    (DWC, "identificationQualifier"), (DWC, "identifiedBy"), (DWC, "dateIdentified"),
    (DWC, "identificationVerificationStatus"), (DWC, "associatedSequences"), (DWC, "associatedMedia"),
    (DWC, "identificationRemarks"), (DWC, "taxonRemarks"), (DWC, "occurrenceRemarks"), (DC, "modified"),
]
COLUMNS = [term for _, term in OCCURRENCE_TERMS]

# Phylum and class of the orders the library holds (calls name orders, GBIF wants the full path).
_HIGHER: dict[str, tuple[str, str]] = {
    **{o: ("Arthropoda", "Insecta") for o in (
        "Archaeognatha", "Blattodea", "Coleoptera", "Dermaptera", "Diptera", "Embioptera", "Ephemeroptera",
        "Hemiptera", "Hymenoptera", "Lepidoptera", "Mantodea", "Mecoptera", "Megaloptera", "Neuroptera",
        "Odonata", "Orthoptera", "Phasmida", "Plecoptera", "Psocodea", "Raphidioptera", "Siphonaptera",
        "Strepsiptera", "Thysanoptera", "Trichoptera", "Zoraptera", "Zygentoma")},
    "Araneae": ("Arthropoda", "Arachnida"), "Opiliones": ("Arthropoda", "Arachnida"),
    "Sarcoptiformes": ("Arthropoda", "Arachnida"), "Trombidiformes": ("Arthropoda", "Arachnida"),
    "Mesostigmata": ("Arthropoda", "Arachnida"), "Julida": ("Arthropoda", "Diplopoda"),
    "Entomobryomorpha": ("Arthropoda", "Collembola"), "Poduromorpha": ("Arthropoda", "Collembola"),
    "Symphypleona": ("Arthropoda", "Collembola"), "Isopoda": ("Arthropoda", "Malacostraca"),
    "Stylommatophora": ("Mollusca", "Gastropoda"),
}


# what XML 1.0 forbids even as a character reference: C0 controls but tab, LF, CR; lone surrogates
# (undecodable file name bytes); U+FFFE, U+FFFF
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(value: Any) -> str:
    """Text any XML 1.0 document (and a UTF-8 file) can hold: a forbidden character becomes
    a visible escape (\\x07, \\udcff) rather than vanishing or breaking the archive. A carriage
    return becomes a line feed, as every XML parser reads it anyway."""
    text = str(value if value is not None else "").replace("\r\n", "\n").replace("\r", "\n")
    return _NOT_XML.sub(lambda m: ascii(m.group())[1:-1], text)


def _clean(value: Any) -> str:
    """A cell of a tab-separated file without quoting: XML-safe text, no tabs or line breaks inside."""
    return " ".join(xml_text(value).split())


def media_path(path: str, project_folder: Path | None) -> str:
    """A photo as associatedMedia: its path relative to the project's folder when it lies inside
    it, else its file name; never an absolute local path (it would publish the user's folders)."""
    p = Path(os.path.normpath(path))
    if project_folder is not None:
        try:
            return p.relative_to(project_folder).as_posix()
        except ValueError:
            pass
    return p.name


def occurrence_row(s: dict[str, Any], project_id: str, software: str,
                   project_folder: Path | None = None) -> dict[str, str]:
    """The Darwin Core occurrence of one specimen (a Project.iter_specimens row with ``made`` and
    ``reviews``, engine.export.provenance.with_provenance); photo paths are given relative to
    ``project_folder`` (see media_path)."""
    overridden = s["review"] == "overridden"
    made, reviews = s.get("made") or [], s.get("reviews")
    override = ((reviews or {}).get("override") or {}) if overridden else {}
    machine_by = machine_identified_by(made) or software
    names = {r: (s[f"final_{r}"] if overridden else s[r]) or "" for r in ("order", "family", "genus", "species")}
    finest = next((r for r in ("species", "genus", "family", "order") if names[r]), "")
    meta = s.get("metadata") or {}
    phylum, klass = _HIGHER.get(names["order"], (meta.get("phylum", ""), meta.get("class", "")))
    qualifier = ""
    if finest and not overridden:
        if s["novel"]:
            qualifier = "aff."
        elif (s[f"{finest}_confidence"] or 0.0) < CONFIDENT:
            qualifier = "cf."
    remarks = []
    if s["call_item_id"] is not None:
        remarks.append(f"machine call ({s['call_modality']}): " + ", ".join(
            f"{r} {s[r]} ({s[f'{r}_confidence']:.2f})" for r in ("order", "family", "genus", "species", "bin_uri")
            if s[r]))
        if s["bin_uri"]:
            remarks.append(f"BIN {s['bin_uri']}")
        if s["top_match_id"]:
            ident = "" if s["identity"] is None else f", identity {s['identity']:.3f}"
            remarks.append(f"top reference match {s['top_match_id']} ({s['top_match_species']}; "
                           f"similarity {s['top_similarity']:.3f}{ident})")
        if s["novel"]:
            remarks.append(f"possibly new at rank {s['novel_rank']}")
        if overridden:
            remarks.append(f"machine call by {machine_by}")
        remarks.extend(flag_remarks(s))
    elif s["status"] == "pending":
        remarks.append("not identified yet (photos only)")
    if s["qc_flags"]:
        remarks.append(f"barcode QC flags: {s['qc_flags']}")
    if s["n_errors"]:
        remarks.append(f"{s['n_errors']} input items failed: {s['error']}")
    if overridden:
        remarks.append(f"identification by {override.get('user') or 'a user'} overrides the machine call")
    remarks.append(software)
    unverified = unverified_text(reviews) if overridden else ""
    sequences = [f"{Path(p).name}#{k}" for m, p, k in s["files"] if m == "dna"]
    media = [media_path(p, project_folder) for m, p, _ in s["files"] if m == "photo"]
    row = {
        "occurrenceID": f"urn:bioscan-desktop:{project_id}:{s['specimen_key']}",
        "basisOfRecord": "PreservedSpecimen",
        "catalogNumber": s["processid"] or s["specimen_key"],
        "otherCatalogNumbers": s["sampleid"] or "",
        "scientificName": names[finest] if finest else "Animalia",
        "taxonRank": finest or "kingdom",
        "kingdom": "Animalia", "phylum": phylum, "class": klass,
        "order": names["order"], "family": names["family"], "genus": names["genus"],
        "specificEpithet": names["species"].split(" ", 1)[1] if " " in names["species"] else "",
        "identificationQualifier": qualifier,
        "identifiedBy": (override.get("user") or "user") if overridden else machine_by,
        "dateIdentified": (override.get("created_at") if overridden else
                           (made[0]["created_at"] if made else s["updated_at"])) or "",
        "identificationVerificationStatus": "unverified name" if unverified else {
            "accepted": "verified by expert", "overridden": "verified by expert",
            "stale": "unverified"}.get(s["review"] or "", "unverified"),
        "associatedSequences": " | ".join(sequences),
        "associatedMedia": " | ".join(media),
        "identificationRemarks": "; ".join(remarks),
        "taxonRemarks": f"not in the reference library, confirmed by the reviewer: {unverified}" if unverified else "",
        "occurrenceRemarks": notes_text(reviews),
        "modified": s["updated_at"] or "",
    }
    return {k: _clean(v) for k, v in row.items()}


def meta_xml() -> bytes:
    ET.register_namespace("", "http://rs.tdwg.org/dwc/text/")
    ns = "{http://rs.tdwg.org/dwc/text/}"
    archive = ET.Element(f"{ns}archive", {"metadata": "eml.xml"})
    core = ET.SubElement(archive, f"{ns}core", {
        "encoding": "UTF-8", "fieldsTerminatedBy": "\\t", "linesTerminatedBy": "\\n", "fieldsEnclosedBy": "",
        "ignoreHeaderLines": "1", "rowType": DWC + "Occurrence"})
    ET.SubElement(ET.SubElement(core, f"{ns}files"), f"{ns}location").text = "occurrence.txt"
    ET.SubElement(core, f"{ns}id", {"index": "0"})
    for i, (namespace, term) in enumerate(OCCURRENCE_TERMS):
        ET.SubElement(core, f"{ns}field", {"index": str(i), "term": namespace + term})
    return ET.tostring(archive, encoding="utf-8", xml_declaration=True)


def eml_xml(title: str, software: str, pub_date: str, n: int, package_id: str) -> bytes:
    eml = ET.Element("eml:eml", {
        "xmlns:eml": "eml://ecoinformatics.org/eml-2.1.1", "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
        "xsi:schemaLocation": "eml://ecoinformatics.org/eml-2.1.1 http://rs.gbif.org/schema/eml-gbif-profile/1.1/eml.xsd",
        "packageId": xml_text(package_id), "system": "BIOSCAN Desktop", "scope": "system", "xml:lang": "en"})
    ds = ET.SubElement(eml, "dataset")
    ET.SubElement(ds, "title", {"xml:lang": "en"}).text = xml_text(title)
    creator = ET.SubElement(ds, "creator")
    ET.SubElement(creator, "organizationName").text = "BIOSCAN Desktop user"
    ET.SubElement(ds, "pubDate").text = pub_date
    ET.SubElement(ds, "language").text = "en"
    para = ET.SubElement(ET.SubElement(ds, "abstract"), "para")
    para.text = xml_text(f"{n} specimens identified from DNA barcodes (COI-5P) and photos with {software}. "
                 "Identifications are machine calls unless identificationVerificationStatus says otherwise.")
    contact = ET.SubElement(ds, "contact")
    ET.SubElement(contact, "organizationName").text = "BIOSCAN Desktop user"
    return ET.tostring(eml, encoding="utf-8", xml_declaration=True)


def _software() -> str:
    from engine import __version__

    return f"BIOSCAN Desktop {__version__}"


def write_dwca(project, path: str | Path) -> int:
    """Write a Darwin Core Archive of a project (atomic); returns the occurrences written."""
    from engine.project import now_iso

    software = _software()
    project_id = project.meta.get("project_id", "")
    project_folder = Path(os.path.abspath(project.path)).parent
    n = 0
    with atomic_output(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("meta.xml", meta_xml())
        with zf.open("occurrence.txt", "w") as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="\n") as fh:
            fh.write("\t".join(COLUMNS) + "\n")
            for s in with_provenance(project, project.iter_specimens(SpecimenFilter(status=["ok", "novel", "pending"]))):
                row = occurrence_row(s, project_id, software, project_folder)
                fh.write("\t".join(row[c] for c in COLUMNS) + "\n")
                n += 1
        zf.writestr("eml.xml", eml_xml(f"BIOSCAN Desktop project {project.path.stem}", software, now_iso()[:10], n,
                                       package_id=f"urn:bioscan-desktop:{project_id}"))
    return n

