"""The files a lab really has: BOLD data packages (BCDM, combined), BOLD and GenBank FASTA
headers, GenBank/EMBL flat files, zip archives, other encodings, and damaged or unsupported
files. The small files here are written in the real formats (header lines copied from the real
BOLD downloads in ../shared/data/raw)."""
from __future__ import annotations

import csv
import gzip
import io
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from engine.errors import InputFormatError
from engine.io import ReadStats, detect_barcode_format, parse_fasta_header, read_barcodes, read_table
from engine.records import TAXONOMY_FIELDS, Barcode, RecordError
from tests.synthetic import make_barcodes

SEQS = [b.sequence for b in make_barcodes(genera=2, species_per_genus=2, records_per_species=3)]

# the first line of BOLD_Public.18-Dec-2023.tsv (a BOLD v5 public data package, BCDM columns)
BCDM_HEADER = (
    "processid sampleid specimenid museumid fieldid inst bin_uri identification funding_src kingdom phylum "
    "class order family subfamily genus species subspecies identified_by voucher_type collectors "
    "collection_date collection_date_accuracy life_stage sex reproduction extrainfo notes coord coord_source "
    "coord_accuracy elev depth elev_accuracy depth_accuracy country province country_iso region sector site "
    "collection_time habitat collection_note associated_taxa associated_specimen species_reference "
    "identification_method recordset_code_arr gb_acs marker_code nucraw sequence_run_site "
    "processid_minted_date sequence_upload_date identification_rank"
).split()
# the first line of BOLD_Public.21-Jun-2024.curated.NL.tsv (the 2024 BCDM: nuc, country/ocean, taxon_rank)
BCDM_2024_HEADER = (
    "processid sampleid fieldid museumid record_id specimenid processid_minted_date bin_uri bin_created_date "
    "collection_code inst taxid taxon_name taxon_rank kingdom phylum class order family subfamily tribe genus "
    "species subspecies species_reference identification identification_method identification_rank "
    "identified_by identifier_email taxonomy_notes sex reproduction life_stage short_note notes voucher_type "
    "tissue_type specimen_linkout associated_specimens associated_taxa collectors collection_date_start "
    "collection_date_end collection_event_id collection_time collection_notes geoid country/ocean country_iso "
    "province/state region sector site site_code coord coord_accuracy coord_source elev elev_accuracy depth "
    "depth_accuracy habitat sampling_protocol nuc nuc_basecount insdc_acs funding_src marker_code "
    "primers_forward primers_reverse sequence_run_site sequence_upload_date bold_recordset_code_arr"
).split()
# the first line of InsectClassification_BOLD_records.tsv.gz (BOLD "combined" TSV; it ends with a tab)
COMBINED_HEADER = (
    "processid sampleid recordID catalognum fieldnum institution_storing bin_uri phylum_taxID phylum_name "
    "class_taxID class_name order_taxID order_name family_taxID family_name subfamily_taxID subfamily_name "
    "genus_taxID genus_name species_taxID species_name subspecies_taxID subspecies_name "
    "identification_provided_by voucher_type tissue_type collectors collectiondate lifestage sex reproduction "
    "extrainfo notes lat lon coord_source coord_accuracy country province region exactsite sequenceID "
    "markercode genbank_accession nucleotides"
).split() + [""]


def bold_line(header: list[str], values: dict[str, str], empty: str = "None") -> str:
    """A data line as BOLD writes it: every column, "None" (BCDM) or " " (combined) where empty."""
    return "\t".join(values.get(c, empty if c else "") for c in header)


def bcdm_rows() -> list[dict[str, str]]:
    common = dict(kingdom="Animalia", phylum="Arthropoda", **{"class": "Insecta"}, order="Diptera",
                  country="Mexico", province="Quintana Roo", coord="(19.5855,-88.5843)",
                  collection_date="2016-10-20", collectors="E. Lugo", marker_code="COI-5P")
    return [
        dict(common, processid="AAASF004-17", sampleid="CBGSFMX-0301", bin_uri="BOLD:AAY5017",
             family="Psychodidae", subfamily="Phlebotominae", genus="Lutzomyia", species="Lutzomyia longipalpis",
             identification="Lutzomyia longipalpis", identified_by="Jorge J. Rodriguez Rojas",
             identification_rank="species", gb_acs="MK851267", nucraw=SEQS[0]),
        # identified to genus: BOLD leaves species "None"; a stray species below the rank is not kept
        dict(common, processid="AACTA051-20", sampleid="BIOUG52693-D01", museumid="BIOUG52693-D01",
             family="Sciaridae", genus="Lycoriella", species="Lycoriella sp. 3", identification="Lycoriella",
             identification_rank="genus", nucraw=SEQS[1]),
        dict(common, processid="AACTA054-20", sampleid="BIOUG52693-D04", family="Cecidomyiidae",
             identification="Cecidomyiidae", identification_rank="family", nucraw=SEQS[2]),
        dict(common, processid="AACTA060-20", family="Cecidomyiidae", identification_rank="family",
             marker_code="COI-3P", nucraw=SEQS[3]),
        dict(common, processid="AACTA061-20", family="Cecidomyiidae", identification_rank="family", nucraw=""),
    ]


def write_bcdm(path: Path, rows: list[dict[str, str]], header: list[str] = BCDM_HEADER) -> Path:
    text = "\t".join(header) + "\n" + "".join(bold_line(header, r) + "\n" for r in rows)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def barcodes(records) -> list[Barcode]:
    return [r for r in records if isinstance(r, Barcode)]


# ----------------------------------------------------------------------------- BOLD tables
@pytest.mark.parametrize("name", ["BOLD_Public.18-Dec-2023.tsv", "BOLD_Public.18-Dec-2023.tsv.gz"])
def test_bcdm_data_package(tmp_path, name):
    f = write_bcdm(tmp_path / name, bcdm_rows())
    assert detect_barcode_format(f) == "bold-bcdm"
    stats = ReadStats()
    out = list(read_barcodes(f, stats))
    assert [r.specimen_id for r in out] == ["AAASF004-17", "AACTA051-20", "AACTA054-20"]
    assert all(isinstance(r, Barcode) for r in out)
    assert stats.summary() == "3 COI-5P read; 2 skipped: 1 COI-3P, 1 no sequence"
    species, genus, family = out
    assert species.sequence == SEQS[0] and species.taxonomy.species == "Lutzomyia longipalpis"
    assert species.taxonomy.bin_uri == "BOLD:AAY5017" and species.sampleid == "CBGSFMX-0301"
    assert species.metadata == {
        "sampleid": "CBGSFMX-0301", "country": "Mexico", "province": "Quintana Roo", "coord": "19.5855,-88.5843",
        "collection_date": "2016-10-20", "collectors": "E. Lugo", "identified_by": "Jorge J. Rodriguez Rojas",
        "identification_rank": "species", "marker": "COI-5P", "accession": "MK851267"}
    # "None" is no value; ranks below the identification rank are empty
    assert (genus.taxonomy.genus, genus.taxonomy.species, genus.taxonomy.subfamily) == ("Lycoriella", "", "")
    assert genus.metadata["museumid"] == "BIOUG52693-D01"
    assert (family.taxonomy.family, family.taxonomy.genus, family.taxonomy.order) == ("Cecidomyiidae", "", "Diptera")
    assert "museumid" not in family.metadata


def test_bcdm_2024_columns(tmp_path):
    row = dict(processid="AACTA2783-20", sampleid="BIOUG53789-C11", museumid="BIOUG53789-C11",
               bin_uri="BOLD:AAA1513", taxon_name="Plutella xylostella", taxon_rank="species",
               order="Lepidoptera", family="Plutellidae", genus="Plutella", species="Plutella xylostella",
               identification="", identification_rank="", identified_by="Kate Perez", collectors="P. Hebert",
               collection_date_start="2011-11-07", collection_date_end="2011-11-09",
               **{"country/ocean": "Australia", "province/state": "Australian Capital Territory"},
               coord="[-35.261, 149.059]", nuc=SEQS[0], insdc_acs="", marker_code="COI-5P")
    f = write_bcdm(tmp_path / "BOLD_Public.21-Jun-2024.curated.NL.tsv", [row], BCDM_2024_HEADER)
    (rec,) = read_barcodes(f)
    assert rec.sequence == SEQS[0] and rec.taxonomy.species == "Plutella xylostella"
    assert rec.metadata["country"] == "Australia" and rec.metadata["province"] == "Australian Capital Territory"
    assert rec.metadata["coord"] == "-35.261,149.059"
    assert rec.metadata["collection_date"] == "2011-11-07/2011-11-09"
    assert rec.metadata["identification_rank"] == "species"  # from taxon_rank when identification_rank is empty


def test_bold_combined_tsv(tmp_path):
    base = dict(phylum_name="Arthropoda", class_name="Insecta", order_name="Coleoptera", family_name="Carabidae",
                subfamily_name="Harpalinae", genus_name="Abax", species_name="Abax parallelus",
                bin_uri="BOLD:AAO0357", collectors="Christian Kerkering", collectiondate="2010-05-14",
                lat="46.6", lon="13.833", country="Austria", province="Carinthia", markercode="COI-5P")
    rows = [
        dict(base, processid="EUCAR584-10", sampleid="ZFMK_COL_2010_798", catalognum="ZFMK_COL_2010_798",
             identification_provided_by="Karsten Hannig", genbank_accession="JF889335", nucleotides=SEQS[0],
             notes='"::meta:{""specimen"":[""Jeffrey Zhang""]}::endMeta:"'),
        dict(base, processid="GBMTG592-16", markercode="CYTB", nucleotides=SEQS[1]),
        dict(base, processid="GBMTG592-16", nucleotides=SEQS[2], lat=" "),  # the same record's COI-5P
        dict(base, processid="DTNHM8316-23", markercode=" ", nucleotides=" "),
    ]
    f = tmp_path / "Abax parallelus.tsv"
    f.write_text("\t".join(COMBINED_HEADER) + "\n" + "".join(bold_line(COMBINED_HEADER, r, " ") + "\n" for r in rows))
    assert detect_barcode_format(f) == "bold"
    stats = ReadStats()
    out = list(read_barcodes(f, stats))
    assert [r.specimen_id for r in out] == ["EUCAR584-10", "GBMTG592-16"] and all(isinstance(r, Barcode) for r in out)
    assert stats.summary() == "2 COI-5P read; 2 skipped: 1 CYTB, 1 no sequence"
    assert out[1].sequence == SEQS[2]
    first = out[0]
    assert first.taxonomy.species == "Abax parallelus" and first.taxonomy.subfamily == "Harpalinae"
    assert first.metadata["coord"] == "46.6,13.833" and first.metadata["museumid"] == "ZFMK_COL_2010_798"
    assert first.metadata["identified_by"] == "Karsten Hannig" and first.metadata["accession"] == "JF889335"
    assert "coord" not in out[1].metadata  # lat is " " (BOLD's empty): no half coordinate


# -------------------------------------------------------------------------------- FASTA headers
@pytest.mark.parametrize("title,ident,genus,species,family,marker,accession", [
    ("GBCOU2225-13|Apion frumentarium|COI-5P|", "GBCOU2225-13", "Apion", "Apion frumentarium", "", "COI-5P", ""),
    ("ABCD123-10|Curculionidae|COI-5P|KF123456", "ABCD123-10", "", "", "Curculionidae", "COI-5P", "KF123456"),
    ("ABCD124-10|Apion sp. 1ACR|COI-3P|", "ABCD124-10", "Apion", "", "", "COI-3P", ""),
    ("MN123456.1 Apion frumentarium voucher ZFMK-TIS-1234 cytochrome oxidase subunit I (COI) gene, partial cds; "
     "mitochondrial", "MN123456.1", "Apion", "Apion frumentarium", "", "COI", "MN123456.1"),
    ("KX987654.1 Cecidomyiidae sp. BIOUG01234-A01 cytochrome c oxidase subunit 1 (COI) gene, partial cds; "
     "mitochondrial", "KX987654.1", "", "", "Cecidomyiidae", "COI", "KX987654.1"),
    ("MT111111.1 Apis mellifera cytochrome c oxidase subunit II (COII) gene, partial cds; mitochondrial",
     "MT111111.1", "Apis", "Apis mellifera", "", "COII", "MT111111.1"),
    ("OQ222222.1 Drosophila melanogaster 16S ribosomal RNA gene, partial sequence; mitochondrial",
     "OQ222222.1", "Drosophila", "Drosophila melanogaster", "", "16S", "OQ222222.1"),
    ("NC_001566.1 Apis mellifera ligustica mitochondrion, complete genome", "NC_001566.1", "Apis",
     "Apis mellifera", "", "mitogenome", "NC_001566.1"),
    ("MZ333333.1 Uncultured Diptera clone X cytochrome oxidase subunit I gene, partial cds", "MZ333333.1",
     "", "", "", "COI", "MZ333333.1"),
    ("gi|1234567|gb|MN123456.1| Apion frumentarium cytochrome oxidase subunit I (COI) gene", "MN123456.1",
     "Apion", "Apion frumentarium", "", "COI", "MN123456.1"),
    ("BIOUG00123-A01 Diptera", "BIOUG00123-A01", "", "", "", "", ""),
    ("  P1  ", "P1", "", "", "", "", ""),
])
def test_fasta_headers(title, ident, genus, species, family, marker, accession):
    h = parse_fasta_header(title)
    assert (h.id, h.marker, h.accession) == (ident, marker, accession)
    tax = h.taxonomy
    assert (tax.genus if tax else "", tax.species if tax else "", tax.family if tax else "") == (genus, species, family)
    assert h.extra["description"] == title.strip()


def test_bold_fasta_ids_are_processids_and_other_markers_are_skipped(tmp_path):
    f = tmp_path / "bold.fas"
    f.write_text(f">GBCOU2225-13|Apion frumentarium|COI-5P|\n{SEQS[0]}\n"
                 f">GBCOU2226-13|Apion frumentarium|COI-3P|\n{SEQS[1]}\n"
                 f">GBCOU2227-13|Curculionidae|COI-5P|BOLD:AAB1234\n{SEQS[2]}\n"
                 f">MN123456.1 Apion frumentarium 16S ribosomal RNA gene, partial sequence\n{SEQS[3]}\n")
    stats = ReadStats()
    out = list(read_barcodes(f, stats))
    assert [r.specimen_id for r in out] == ["GBCOU2225-13", "GBCOU2227-13"]
    assert out[0].taxonomy.species == "Apion frumentarium" and out[0].metadata["marker"] == "COI-5P"
    assert out[1].taxonomy.family == "Curculionidae" and out[1].taxonomy.bin_uri == "BOLD:AAB1234"
    assert out[0].extra["description"] == "GBCOU2225-13|Apion frumentarium|COI-5P|"
    assert stats.summary() == "2 COI-5P read; 2 skipped: 1 COI-3P, 1 16S"


# ---------------------------------------------------------------------------- GenBank / EMBL
def genbank_record(accession: str, seq: str, definition: str, organism: str, lineage: str,
                   features: str, source_extra: str = "") -> str:
    origin = "".join(
        f"{i + 1:>9} " + " ".join(seq[j:j + 10].lower() for j in range(i, min(i + 60, len(seq)), 10)) + "\n"
        for i in range(0, len(seq), 60))
    return (
        f"LOCUS       {accession:<16}{len(seq):>12} bp    DNA     linear   INV 01-JUN-2020\n"
        f"DEFINITION  {definition}\n"
        f"ACCESSION   {accession}\n"
        f"VERSION     {accession}.1\n"
        "KEYWORDS    BARCODE.\n"
        f"SOURCE      mitochondrion {organism}\n"
        f"  ORGANISM  {organism}\n"
        f"            {lineage}\n"
        "FEATURES             Location/Qualifiers\n"
        f"     source          1..{len(seq)}\n"
        f'                     /organism="{organism}"\n'
        '                     /organelle="mitochondrion"\n'
        '                     /mol_type="genomic DNA"\n'
        f"{source_extra}{features}"
        f"ORIGIN\n{origin}//\n"
    )


def test_genbank_flat_file(tmp_path):
    coi = genbank_record(
        "MN123456", SEQS[0], "Apion frumentarium voucher ZFMK-TIS-1234 cytochrome oxidase subunit I\n"
        "            (COI) gene, partial cds; mitochondrial.", "Apion frumentarium",
        "Eukaryota; Metazoa; Ecdysozoa; Arthropoda; Hexapoda; Insecta; Pterygota;\n"
        "            Neoptera; Endopterygota; Coleoptera; Polyphaga; Cucujiformia;\n"
        "            Curculionoidea; Brentidae; Apioninae; Apion.",
        f"     CDS             <1..>{len(SEQS[0])}\n"
        '                     /gene="COI"\n'
        '                     /codon_start=1\n'
        '                     /transl_table=5\n'
        '                     /product="cytochrome oxidase subunit I"\n',
        '                     /specimen_voucher="ZFMK-TIS-1234"\n'
        '                     /country="Germany: Bavaria"\n'
        '                     /lat_lon="48.14 N 11.58 E"\n'
        '                     /collection_date="12-Jun-2015"\n'
        '                     /collected_by="J. Smith"\n')
    spacer = "ACGT" * 100
    genome = spacer + SEQS[1] + spacer + SEQS[2] + spacer
    start, end = len(spacer) + 1, len(spacer) + len(SEQS[1])
    mito = genbank_record(
        "NC_001566", genome, "Apis mellifera ligustica mitochondrion, complete genome.", "Apis mellifera ligustica",
        "Eukaryota; Metazoa; Ecdysozoa; Arthropoda; Hexapoda; Insecta; Pterygota;\n"
        "            Neoptera; Endopterygota; Hymenoptera; Apocrita; Aculeata; Apoidea; Apidae;\n"
        "            Apinae; Apini; Apis.",
        f"     CDS             {end + len(spacer) + 1}..{end + len(spacer) + len(SEQS[2])}\n"
        '                     /gene="CYTB"\n'
        '                     /product="cytochrome b"\n'
        f"     CDS             {start}..{end}\n"
        '                     /gene="COX1"\n'
        '                     /product="cytochrome c oxidase subunit I"\n')
    rrna = genbank_record(
        "OQ222222", SEQS[3], "Drosophila melanogaster 16S ribosomal RNA gene, partial sequence;\n"
        "            mitochondrial.", "Drosophila melanogaster",
        "Eukaryota; Metazoa; Ecdysozoa; Arthropoda; Hexapoda; Insecta; Pterygota;\n"
        "            Neoptera; Endopterygota; Diptera; Brachycera; Muscomorpha; Ephydroidea;\n"
        "            Drosophilidae; Drosophilinae; Drosophila.",
        f"     rRNA            <1..>{len(SEQS[3])}\n"
        '                     /product="16S ribosomal RNA"\n')
    f = tmp_path / "sequence.gb"
    f.write_text(coi + mito + rrna)
    assert detect_barcode_format(f) == "genbank"
    stats = ReadStats()
    out = list(read_barcodes(f, stats))
    assert [r.specimen_id for r in out] == ["MN123456.1", "NC_001566.1"]
    apion, apis = out
    assert apion.sequence.upper() == SEQS[0]
    t = apion.taxonomy
    assert (t.order, t.family, t.subfamily, t.genus, t.species) == (
        "Coleoptera", "Brentidae", "Apioninae", "Apion", "Apion frumentarium")
    assert apion.metadata == {"accession": "MN123456.1", "country": "Germany", "province": "Bavaria",
                              "coord": "48.14,11.58", "collection_date": "12-Jun-2015", "collectors": "J. Smith",
                              "museumid": "ZFMK-TIS-1234", "marker": "COI"}
    assert apis.sequence.upper() == SEQS[1]  # the COX1 gene of the mitogenome, not all 2.5 kb
    assert (apis.taxonomy.order, apis.taxonomy.family, apis.taxonomy.species) == ("Hymenoptera", "Apidae",
                                                                                  "Apis mellifera")
    assert stats.summary() == "2 COI read; 1 skipped: 1 16S"

    from Bio import SeqIO  # the same records as EMBL

    embl = tmp_path / "sequence.embl"
    SeqIO.write(list(SeqIO.parse(f, "genbank"))[:1], embl, "embl")
    assert detect_barcode_format(embl) == "embl"
    (rec,) = read_barcodes(embl)
    assert rec.specimen_id == "MN123456.1" and rec.sequence.upper() == SEQS[0]
    assert rec.taxonomy.species == "Apion frumentarium"


def test_damaged_genbank_record_ends_the_file_with_an_error(tmp_path):
    good = genbank_record("MN123456", SEQS[0], "Apion frumentarium COI gene.", "Apion frumentarium",
                          "Eukaryota; Insecta; Coleoptera; Brentidae; Apion.", "")
    f = tmp_path / "cut.gbk"
    f.write_text(good + good.replace("MN123456", "MN123457")[:400])
    out = list(read_barcodes(f))
    assert isinstance(out[0], Barcode) and out[0].specimen_id == "MN123456.1"
    assert isinstance(out[-1], RecordError) and "malformed genbank" in out[-1].message.lower()


# ----------------------------------------------------------------------- unsupported formats
@pytest.mark.parametrize("name,content,reason", [
    ("reads.fastq", b"@M00123:1:000:1:1:1\nACGTACGT\n+\nIIIIIIII\n", "FASTQ reads: give the consensus barcodes as FASTA"),
    ("reads.fasta", b"@M00123:1:000:1:1:1\nACGTACGT\n+\nIIIIIIII\n", "FASTQ reads: give the consensus barcodes as FASTA"),
    ("sheet.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "Excel workbook"),
    ("trace.ab1", b"ABIF\x00e" + b"\x00" * 100, "ABI sequencer trace"),
    ("paper.pdf.txt", b"%PDF-1.4\n%\xe2\xe3\n", "a PDF document"),
    ("page.tsv", b"<!DOCTYPE html>\n<html><body>Error</body></html>\n", "an HTML page"),
    ("x.fasta.bz2.fasta", b"BZh91AY&SY" + bytes(range(200)), "bzip2-compressed"),
    ("blob.fasta", bytes(range(256)) * 4, "binary data"),
    ("bad.gb", b"this is not a flat file\n", "malformed GenBank"),
])
def test_unsupported_files_say_what_they_are(tmp_path, name, content, reason):
    f = tmp_path / name
    f.write_bytes(content)
    with pytest.raises(InputFormatError, match=reason):
        list(read_barcodes(f))
    with pytest.raises(InputFormatError, match=reason):
        detect_barcode_format(f)


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_excel_workbook_is_refused_with_what_to_do(tmp_path):
    f = write_zip(tmp_path / "specimens.xlsx", {"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<w/>"})
    with pytest.raises(InputFormatError, match="an Excel workbook: save it as TSV or CSV"):
        list(read_barcodes(f))
    with pytest.raises(InputFormatError, match="Excel workbook"):
        read_table(f)


def test_zip_archive_members_are_read(tmp_path):
    fasta = f">GBCOU2225-13|Apion frumentarium|COI-5P|\n{SEQS[0]}\n>GBCOU2226-13|Apion|COI-3P|\n{SEQS[1]}\n"
    tsv = "\t".join(BCDM_HEADER) + "\n" + bold_line(BCDM_HEADER, bcdm_rows()[0]) + "\n"
    f = write_zip(tmp_path / "download.zip", {
        "bold/seqs.fasta": fasta.encode(), "bold/package.tsv.gz": gzip.compress(tsv.encode()),
        "README.txt": b"BOLD download of 2024-06-21\n", "__MACOSX/bold/._seqs.fasta": b"\x00\x05\x16\x07",
        "bold/broken.fasta": b"not a fasta file\n", "photo.jpg": b"\xff\xd8\xff\xe0",
    })
    assert detect_barcode_format(f) == "zip"
    stats = ReadStats()
    out = list(read_barcodes(f, stats))
    ok = barcodes(out)
    assert [r.specimen_id for r in ok] == ["GBCOU2225-13", "AAASF004-17"]
    assert ok[0].source_file == f"{f}/bold/seqs.fasta" and ok[1].metadata["country"] == "Mexico"
    (err,) = [r for r in out if isinstance(r, RecordError)]
    assert err.source_file == f"{f}/bold/broken.fasta" and "download.zip/bold/broken.fasta: malformed FASTA" in err.message
    assert stats.summary() == "2 COI-5P read; 1 skipped: 1 COI-3P; 1 error"


def test_zip_without_barcode_files_says_what_it_holds(tmp_path):
    f = write_zip(tmp_path / "photos.zip", {"a.jpg": b"\xff\xd8\xff", "b.jpg": b"\xff\xd8\xff"})
    with pytest.raises(InputFormatError, match=r"no FASTA file or table inside \(it holds a.jpg, b.jpg\)"):
        list(read_barcodes(f))


# ------------------------------------------------------------------------------- encodings
@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig"])
@pytest.mark.parametrize("kind", ["fasta", "tsv"])
def test_utf16_and_utf32_files_are_decoded(tmp_path, codec, kind):
    if kind == "fasta":
        text = f">P1|Apion frumentarium|COI-5P|\n{SEQS[0]}\n>P2\n{SEQS[1]}\n"
    else:
        text = f"processid\tspecies\tcollectors\tdna_barcode\nP1\tApion frumentarium\tMüller\t{SEQS[0]}\nP2\t\t\t{SEQS[1]}\n"
    f = tmp_path / f"saved by excel.{kind}"
    f.write_bytes(text.encode(codec))
    out = list(read_barcodes(f))
    assert [(r.specimen_id, r.sequence) for r in out] == [("P1", SEQS[0]), ("P2", SEQS[1])]
    assert out[0].taxonomy.species == "Apion frumentarium"


def test_windows_1252_bytes_in_a_utf8_file_keep_their_letters(tmp_path):
    f = tmp_path / "specimens.csv"
    f.write_bytes(f"processid,collectors,country,dna_barcode\nP1,J. M\xfcller,C\xf4te d'Ivoire,{SEQS[0]}\n".encode("latin-1"))
    (rec,) = read_barcodes(f)
    assert rec.metadata["collectors"] == "J. Müller" and rec.metadata["country"] == "Côte d'Ivoire"


# ---------------------------------------------------------------------------- damaged files
def many_records(n: int = 120) -> list[Barcode]:
    return make_barcodes(genera=4, species_per_genus=5, records_per_species=max(1, n // 20))


def gz_fasta_and_tsv(recs: list[Barcode]) -> dict[str, bytes]:
    fasta = "".join(f">{r.specimen_id}\n{r.sequence}\n" for r in recs)
    tsv = "processid\tspecies\tdna_barcode\n" + "".join(f"{r.specimen_id}\t{r.taxonomy.species}\t{r.sequence}\n"
                                                        for r in recs)
    return {"x.fasta.gz": gzip.compress(fasta.encode(), mtime=0), "x.tsv.gz": gzip.compress(tsv.encode(), mtime=0)}


@pytest.mark.parametrize("name", ["x.fasta.gz", "x.tsv.gz"])
def test_truncated_gzip_keeps_the_records_before_the_cut(tmp_path, name):
    recs = many_records()
    data = gz_fasta_and_tsv(recs)[name]
    f = tmp_path / name
    f.write_bytes(data[: len(data) * 2 // 3])
    out = list(read_barcodes(f))
    kept, last = out[:-1], out[-1]
    assert 0 < len(kept) < len(recs)
    assert [(r.specimen_id, r.sequence) for r in kept] == [(r.specimen_id, r.sequence) for r in recs[:len(kept)]]
    assert isinstance(last, RecordError) and "truncated" in last.message
    assert not any(isinstance(r, RecordError) for r in kept)


@pytest.mark.parametrize("name", ["x.fasta.gz", "x.tsv.gz"])
@pytest.mark.parametrize("where", [0.3, 0.5, 0.8, -6])
def test_bit_flipped_gzip_is_refused_not_read_as_garbage(tmp_path, name, where):
    """A flipped bit in deflate data shows only at the checksum, after wrong records came out:
    no record of the file is kept, and the reason names the damage."""
    data = bytearray(gz_fasta_and_tsv(many_records())[name])
    data[int(len(data) * where) if where > 0 else where] ^= 0x10
    f = tmp_path / name
    f.write_bytes(bytes(data))
    with pytest.raises(InputFormatError, match="damaged gzip|corrupt"):
        list(read_barcodes(f))
    if name.endswith(".tsv.gz"):
        with pytest.raises(InputFormatError, match="corrupt"):
            list(read_table(f).rows())


def test_stray_quote_in_tsv_does_not_swallow_the_file(tmp_path):
    f = tmp_path / "bold.tsv"
    f.write_text("processid\tnotes\tdna_barcode\n"
                 f"P1\t5\" long\t{SEQS[0]}\n"
                 f"P2\t\"unclosed\t{SEQS[1]}\n"
                 f"P3\t\"quoted, \"\"as Excel writes\"\"\"\t{SEQS[2]}\n"
                 f"P4\tplain\t{SEQS[3]}\n")
    out = list(read_barcodes(f))
    assert [r.specimen_id for r in out] == ["P1", "P2", "P3", "P4"] and all(isinstance(r, Barcode) for r in out)
    assert [r.sequence for r in out] == SEQS[:4]
    rows = [row for _, row in read_table(f).rows()]
    assert rows[0]["notes"] == '5" long' and rows[2]["notes"] == 'quoted, "as Excel writes"'


def test_runaway_quote_in_csv_costs_only_its_row(tmp_path):
    f = tmp_path / "lab.csv"
    f.write_text("processid,notes,dna_barcode\n"
                 f"P1,\"two\nlines\",{SEQS[0]}\n"
                 f"P2,\"never closed,{SEQS[1]}\n"
                 f"P3,ok,{SEQS[2]}\n"
                 f"P4,\"a, b\",{SEQS[3]}\n")
    out = list(read_barcodes(f))
    assert [type(r).__name__ for r in out] == ["Barcode", "RecordError", "Barcode", "Barcode"]
    assert [r.specimen_id for r in barcodes(out)] == ["P1", "P3", "P4"]
    assert "line 4: unbalanced quote" in out[1].message
    assert [row["notes"] for _, row in read_table(f).rows() if isinstance(row, dict)] == ["two\nlines", "ok", "a, b"]


@pytest.mark.parametrize("kind", ["fasta", "tsv", "csv"])
def test_ids_differing_only_in_whitespace_are_duplicates(tmp_path, kind):
    ids = ["P1", " P1", "P1\u00a0", "P2"]
    f = tmp_path / f"ids.{kind}"
    if kind == "fasta":
        f.write_text("".join(f">{i}\n{s}\n" for i, s in zip(ids, SEQS)))
    else:
        sep = "\t" if kind == "tsv" else ","
        f.write_text(f"processid{sep}dna_barcode\n" + "".join(f"{i}{sep}{s}\n" for i, s in zip(ids, SEQS)))
    out = list(read_barcodes(f))
    assert [type(r).__name__ for r in out] == ["Barcode", "RecordError", "RecordError", "Barcode"]
    assert [r.specimen_id for r in barcodes(out)] == ["P1", "P2"]
    assert all("duplicate" in r.message and "'P1'" in r.message for r in out if isinstance(r, RecordError))


# ------------------------------------------------------------------------- any bytes at all
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

_TEXTY = st.text(alphabet=st.sampled_from(list('>@+|"\t,\n\r ACGTN-acgtP1x;LOCUS\u00e9\ufeff')), max_size=400)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=600), _TEXTY.map(lambda t: t.encode("utf-8")),
                      _TEXTY.map(lambda t: t.encode("utf-16"))),
       suffix=st.sampled_from([".fasta", ".fasta.gz", ".tsv", ".csv", ".gb", ".zip"]),
       cut=st.floats(0.0, 1.0), flip=st.integers(0, 10_000))
def test_any_bytes_give_records_or_a_format_error(tmp_path, data, suffix, cut, flip):
    if suffix == ".gb":  # past the LOCUS line, into Biopython's flat-file scanner
        data = b"LOCUS       MN123456                 120 bp    DNA     linear   INV 01-JUN-2020\n" + data
    if suffix == ".zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(("m.fasta", "m.tsv", "m.fasta.gz")[flip % 3], data)
        data = buf.getvalue()
    if suffix.endswith((".gz", ".zip")):  # whole, truncated or bit-flipped archive
        data = bytearray(gzip.compress(data, mtime=0) if suffix.endswith(".gz") else data)
        if flip % 3 == 1:
            data = data[: int(len(data) * cut)]
        elif flip % 3 == 2 and data:
            data[flip % len(data)] ^= 1 << (flip % 8)
        data = bytes(data)
    f = tmp_path / f"fuzz{suffix}"
    f.write_bytes(data)
    try:
        out = list(read_barcodes(f))
    except InputFormatError:
        return
    assert all(isinstance(r, (Barcode, RecordError)) for r in out)


# ------------------------------------------------------------------------------ the CLI
def test_identify_and_library_build_print_what_was_read(tmp_path, tiny_library, tiny_dna_pack, capsys):
    from engine.cli import main

    f = write_bcdm(tmp_path / "package.tsv", bcdm_rows())
    assert main(["identify", str(f), "--library", str(tiny_library), "--model", str(tiny_dna_pack), "-q",
                 "--out", str(tmp_path / "out.csv")]) == 0
    assert "package.tsv: 3 COI-5P read; 2 skipped: 1 COI-3P, 1 no sequence" in capsys.readouterr().err
    with open(tmp_path / "out.csv", newline="") as fh:
        assert [r["specimen_id"] for r in csv.DictReader(fh)] == ["AAASF004-17", "AACTA051-20", "AACTA054-20"]

    db = tmp_path / "bold.db"
    assert main(["library", "build", "--barcodes", str(f), "--out", str(db), "--model", str(tiny_dna_pack), "-q"]) == 0
    err = capsys.readouterr().err
    assert "package.tsv: 3 COI-5P read; 2 skipped: 1 COI-3P, 1 no sequence" in err
    from engine.library import ReferenceLibrary

    refs = ReferenceLibrary.open(db).references("dna")  # references at the ranks they have
    assert sorted((t.family, t.genus, t.species) for t in refs.taxonomy) == [
        ("Cecidomyiidae", "", ""), ("Psychodidae", "Lutzomyia", "Lutzomyia longipalpis"), ("Sciaridae", "Lycoriella", "")]


# ---------------------------------------------------------------------------- real BOLD data
def _raw_bold_rows(path: Path) -> list[dict[str, str]]:
    """The file's rows by the csv module, independently of engine.io."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


@pytest.mark.real_data
@pytest.mark.parametrize("name", ["BOLD_Public.18-Dec-2023.tsv", "BOLD_Public.21-Jun-2024.curated.NL.tsv"])
def test_real_bcdm_packages(real_data, name):
    path = real_data / "raw" / "bold_data_packages" / name
    rows = _raw_bold_rows(path)
    stats = ReadStats()
    out = list(read_barcodes(path, stats))
    assert detect_barcode_format(path) == "bold-bcdm"
    assert not [r for r in out if isinstance(r, RecordError)]
    seq_col = "nucraw" if "nucraw" in rows[0] else "nuc"
    kept = [r for r in rows if r["marker_code"] == "COI-5P" and r[seq_col].strip()]
    assert [b.specimen_id for b in out] == [r["processid"] for r in kept]
    assert stats.read + sum(stats.skipped.values()) == len(rows)
    ranks = [r for r in TAXONOMY_FIELDS if r != "bin_uri"]
    for b, row in zip(out, kept):
        assert b.sequence == row[seq_col]
        rank = row["identification_rank"] or row.get("taxon_rank", "")
        named = [r for r in ranks if b.taxonomy and b.taxonomy.get(r)]
        if rank in ranks:  # named down to the identification rank, nothing below
            assert named and named[-1] == rank, (b.specimen_id, rank, b.taxonomy)
        assert "None" not in b.metadata.values() and b.metadata.get("country")


@pytest.mark.real_data
def test_real_bold_combined_file(real_data):
    path = real_data / "raw" / "InsectClassification_BOLD_records.tsv.gz"
    rows = _raw_bold_rows(path)
    stats = ReadStats()
    out = list(read_barcodes(path, stats))
    errors = [r for r in out if isinstance(r, RecordError)]
    assert not errors, errors[:3]
    markers = Counter(r["markercode"].strip() for r in rows if r["nucleotides"].strip())
    assert stats.read == markers["COI-5P"] + markers[""]
    assert {m: n for m, n in stats.skipped.items() if m != "no sequence"} == {
        m: n for m, n in markers.items() if m not in ("COI-5P", "")}
    assert stats.skipped["no sequence"] == sum(1 for r in rows if not r["nucleotides"].strip())
    with_coords = sum(1 for r in rows if r["markercode"].strip() == "COI-5P" and r["lat"].strip() and r["lon"].strip())
    assert sum("coord" in b.metadata for b in out) == with_coords


@pytest.mark.real_data
def test_real_package_as_bold_fasta(real_data, tmp_path):
    path = real_data / "raw" / "bold_data_packages" / "BOLD_Public.18-Dec-2023.tsv"
    recs = barcodes(read_barcodes(path))
    f = tmp_path / "bold.fasta"
    with f.open("w") as fh:
        for r in recs:
            t = r.taxonomy
            name = next((t.get(k) for k in ("species", "genus", "subfamily", "family", "order") if t and t.get(k)), "")
            fh.write(f">{r.specimen_id}|{name}|COI-5P|{r.metadata.get('accession', '')}\n{r.sequence}\n")
    out = list(read_barcodes(f))
    assert [(b.specimen_id, b.sequence) for b in out] == [(r.specimen_id, r.sequence) for r in recs]
    by_id = {r.specimen_id: r.taxonomy for r in recs}
    for b in out:  # the header's one name lands at its rank
        t = by_id[b.specimen_id]
        if t and t.species:
            assert b.taxonomy.species == t.species and b.taxonomy.genus == t.genus
        elif t and t.genus:
            assert b.taxonomy.genus == t.genus and not b.taxonomy.species
        elif t and t.family and not t.subfamily:
            assert b.taxonomy.family == t.family and not b.taxonomy.genus


# ------------------------------------------------------- a library from a BOLD data package
def test_calibration_does_not_group_records_unnamed_at_a_rank():
    """A BOLD package's references are named to different ranks; those without a species must
    not act as one big species (nor those without a BIN as one BIN) when thresholds are fitted."""
    import numpy as np

    from engine.assign import calibrate
    from engine.records import Taxonomy

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 16))
    taxonomy, rows = [], []
    for s in range(3):  # 3 named species, 4 records each
        for _ in range(4):
            taxonomy.append(Taxonomy("Diptera", "Sciaridae", "", "Bradysia", f"Bradysia sp{s}", f"BOLD:AAA000{s}"))
            rows.append(centres[s] + rng.normal(scale=0.1, size=16))
    for r in range(20):  # identified to family only, no BIN
        taxonomy.append(Taxonomy("Diptera", "Cecidomyiidae"))
        rows.append(centres[3 + r % 5] + rng.normal(scale=0.1, size=16))
    matrix = np.array(rows, dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    rates = calibrate(matrix, taxonomy)["similarity"]["rates"]
    assert rates["species"]["n_present"] == rates["species"]["n_absent"] == 12
    assert rates["bin_uri"]["n_present"] == rates["bin_uri"]["n_absent"] == 12
