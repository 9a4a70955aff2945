"""Dock widgets and the one worker helper; thin, they call core/."""

import sys


def _keep_triton_out() -> None:
    """Stop torch from importing triton where it is of no use (no CUDA GPU).

    MONAI imports torchvision, which imports ``torch._dynamo``, which imports triton if it is
    installed (CUDA builds of torch ship it). Triton carries its own LLVM; loaded after the viewer
    has started Mesa's software OpenGL (llvmpipe, which links another LLVM), the two clash and the
    process crashes. Without a CUDA GPU triton is never used, so it is hidden before that import.
    """
    if "triton" in sys.modules:
        return
    import torch

    if torch.version.cuda is None or not torch.cuda.is_available():
        sys.modules["triton"] = None  # "import triton" now raises ImportError: torch treats it as absent


_keep_triton_out()
