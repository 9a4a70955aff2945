"""Prompted annotation: clicks and boxes -> 3D masks (engines behind one interface), slice tools, ranking."""

from .base import InteractiveEngine
from .engine import available_engines, choose_engine, segment_prompts
from .prompts import PromptError, Prompts, prompts_from_itk

__all__ = ["InteractiveEngine", "PromptError", "Prompts", "available_engines", "choose_engine",
           "prompts_from_itk", "segment_prompts"]
