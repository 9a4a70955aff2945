"""User-facing errors.

Every failure a user can cause (a bad file, a wrong model, a bad option) is a
:class:`MedvisionError` whose message says what was wrong and what to do. The
CLI prints it as one ``error: ...`` line (exit 2); widgets show it as a napari
notification.
"""


class MedvisionError(Exception):
    """Base class of all user-facing errors."""


class UnreadableFileError(MedvisionError):
    """A file or folder exists but cannot be read as a medical image."""


class UnsupportedFormatError(MedvisionError):
    """The file type is not one we read or write."""


class GeometryMismatchError(MedvisionError):
    """Two volumes (e.g. an image and its label map) do not share one geometry."""


class WriteError(MedvisionError):
    """A volume could not be written; the destination was left as it was."""


class FourDimensionalError(UnreadableFileError):
    """A 4D file was opened without saying which of its volumes to read."""

    def __init__(self, message: str, frames: int):
        super().__init__(message)
        self.frames = frames


class ModelError(MedvisionError):
    """A model cannot be loaded or does not fit the image (wrong channels, missing weights...)."""


class UntrustedCodeError(ModelError):
    """A bundle or weights file would run code the user has not agreed to trust."""


class CancelledError(MedvisionError):
    """The user stopped a run; nothing was changed."""
