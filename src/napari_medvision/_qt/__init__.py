"""Dock widgets and the one worker helper; thin, they call core/."""

import sys


def _import_dynamo_without_triton() -> None:
    """Import ``torch._dynamo`` with triton hidden, where triton is of no use (no CUDA GPU); then unhide it.

    MONAI imports torchvision, which imports ``torch._dynamo``, which imports triton if it is
    installed (CUDA builds of torch ship it) to ask whether it is there. Triton carries its own LLVM;
    loaded after the viewer has started Mesa's software OpenGL (llvmpipe, which links another LLVM),
    the two clash and the process crashes. torch has no switch for that probe, so it runs once here,
    before any of our MONAI imports, with ``import triton`` failing; torch remembers "no triton"
    (``torch.utils._triton.has_triton_package`` is cached) and never asks again. ``sys.modules``
    is restored at once: other plugins and user code can still import triton themselves.
    """
    if "triton" in sys.modules or "torch._dynamo" in sys.modules:
        return  # triton already loaded (someone wants it), or the probe has already run
    import torch

    if torch.version.cuda is not None and torch.cuda.is_available():
        return
    sys.modules["triton"] = None  # "import triton" raises ImportError while torch._dynamo is imported
    try:
        import torch._dynamo  # noqa: F401
    finally:
        if "triton" in sys.modules and sys.modules["triton"] is None:
            del sys.modules["triton"]


_import_dynamo_without_triton()
