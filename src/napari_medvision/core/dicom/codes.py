"""SNOMED CT codes for segment names: the organs and findings our models and common zoo models name.

A DICOM segment carries a coded category (what kind of thing) and type (which thing). Names are
matched loosely ("Kidney_Left", "left kidney", "kidney-l"); findings win over organs, so
"liver lesion" is coded as a lesion. Anything else gets a generic "Tissue" code: the segment
label still says what it is.
"""

from __future__ import annotations

import re

from pydicom.sr.coding import Code

ANATOMY = Code("91723000", "SCT", "Anatomical Structure")
ALTERED = Code("49755003", "SCT", "Morphologically Altered Structure")
TISSUE = Code("85756007", "SCT", "Tissue")

#: (words that must all appear, code, meaning); the first match wins, so specific entries come first.
_FINDINGS = [
    (("tumour",), "108369006", "Neoplasm"), (("tumor",), "108369006", "Neoplasm"),
    (("neoplasm",), "108369006", "Neoplasm"), (("cancer",), "108369006", "Neoplasm"),
    (("metastasis",), "14799000", "Metastatic neoplasm"),
    (("nodule",), "27925004", "Nodule"), (("mass",), "4147007", "Mass"),
    (("cyst",), "441457006", "Cyst"), (("lesion",), "52988006", "Lesion"),
    (("necrosis",), "6574001", "Necrosis"), (("edema",), "79654002", "Edema"), (("oedema",), "79654002", "Edema"),
]
_ORGANS = [
    (("left", "kidney"), "18639004", "Left kidney"), (("right", "kidney"), "9846003", "Right kidney"),
    (("kidney",), "64033007", "Kidney"),
    (("left", "lung"), "44029006", "Left lung"), (("right", "lung"), "3341006", "Right lung"),
    (("lung",), "39607008", "Lung"),
    (("spleen",), "78961009", "Spleen"), (("liver",), "10200004", "Liver"),
    (("pancreas",), "15776009", "Pancreas"), (("stomach",), "69695003", "Stomach"),
    (("gallbladder",), "28231008", "Gallbladder"), (("heart",), "80891009", "Heart"),
    (("aorta",), "15825003", "Aorta"), (("vena", "cava"), "64131007", "Inferior vena cava"),
    (("ivc",), "64131007", "Inferior vena cava"), (("portal", "vein"), "32764006", "Portal vein"),
    (("esophagus",), "32849002", "Esophagus"), (("oesophagus",), "32849002", "Esophagus"),
    (("adrenal",), "23451007", "Adrenal gland"), (("duodenum",), "38848004", "Duodenum"),
    (("colon",), "71854001", "Colon"), (("small", "bowel"), "30315005", "Small intestine"),
    (("bladder",), "89837001", "Urinary bladder"), (("prostate",), "41216001", "Prostate"),
    (("brain",), "12738006", "Brain"), (("bone",), "272673000", "Bone"),
    (("body",), "38266002", "Entire body"),
]
_ALIASES = {"l": "left", "r": "right", "lt": "left", "rt": "right", "kidneys": "kidney", "lungs": "lung",
            "tumours": "tumour", "tumors": "tumor", "lesions": "lesion", "nodules": "nodule"}


def _words(name: str) -> set[str]:
    words = re.split(r"[^a-z0-9]+", name.lower())
    return {_ALIASES.get(word, word) for word in words if word}


def segment_codes(name: str) -> tuple[Code, Code]:
    """``(category, type)`` SNOMED CT codes for a segment called ``name``."""
    words = _words(name)
    for table, category in ((_FINDINGS, ALTERED), (_ORGANS, ANATOMY)):
        for needed, value, meaning in table:
            if set(needed) <= words:
                return category, Code(value, "SCT", meaning)
    return TISSUE, TISSUE
