"""DICOM results and PACS: DICOM-SEG and RTSTRUCT in/out on their source series, DICOMweb client."""
