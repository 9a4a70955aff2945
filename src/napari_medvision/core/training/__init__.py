"""Annotated cases on disk and (later) fine-tuning."""

from .case_store import CaseStore

__all__ = ["CaseStore"]
