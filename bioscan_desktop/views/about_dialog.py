"""About: versions of the app, engine, model pack and library in use, and where the data come from."""
from __future__ import annotations

import html

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout

ATTRIBUTIONS = """
<h3>Data and models</h3>
<ul>
<li><b>BOLD Systems</b> public records (boldsystems.org): COI-5P barcodes and taxonomy of the reference library
(via matteodegobbi/InsectClassification).</li>
<li><b>BIOSCAN-1M</b> (Gharaee et al. 2023; zahrag/BIOSCAN-1M): records and metadata; images © CBG Photography
Group, Centre for Biodiversity Genomics, CC BY-NC-SA 4.0.</li>
<li><b>BarcodeBERT</b> (Kari-Genomics-Lab/BarcodeBERT, MIT): the unseen-species evaluation barcodes
(BIOSCAN-1M records).</li>
<li>BIOSCAN-5M specimen photos (3dlg-hcvc/Bioscan-ImgFilter), BIOSCAN / CBG images.</li>
</ul>
<p>Used for research, development and testing; check each source's terms before redistributing.</p>
<p>Built with Qt (PySide6, LGPL), ONNX Runtime (MIT), NumPy, Pillow, Biopython, scikit-learn, scranpy (umappp),
matplotlib and SQLite.</p>
"""


def about_html(app_version: str, engine_version: str, info) -> str:
    """``info`` is a bioscan_desktop.jobs.SetupInfo, or None while it is being read."""
    rows = [("BIOSCAN Desktop", app_version), ("Engine", engine_version)]
    if info is not None:
        rows += [("Device", info.device), ("DNA model pack", info.dna_model),
                 ("Model sha256", info.dna_model_sha256 or "—"), ("Model path", info.dna_model_path),
                 ("Reference library", info.library), ("Library id", info.library_id or "—"),
                 ("Library path", info.library_path)]
        rows += [("Problem", p) for p in info.problems]
    table = "".join(f"<tr><td><b>{html.escape(k)}</b></td><td style='padding-left:12px'>"
                    f"<code>{html.escape(str(v))}</code></td></tr>" for k, v in rows)
    return ("<h2>BIOSCAN Desktop</h2><p>Offline identification of insect specimens from DNA barcodes and "
            f"photos.</p><table>{table}</table>{ATTRIBUTIONS}")


class AboutDialog(QDialog):
    def __init__(self, text_html: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle("About BIOSCAN Desktop")
        self.text = QTextBrowser()
        self.text.setOpenExternalLinks(False)
        self.text.setHtml(text_html)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        close = buttons.button(QDialogButtonBox.StandardButton.Close)
        close.setDefault(True)  # Enter and Esc both close it
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)
        self.resize(680, 560)
