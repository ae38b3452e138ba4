"""Exceptions with messages meant for the user."""


class BioscanError(Exception):
    """Base class: the message is shown to the user as is."""


class InputFormatError(BioscanError):
    """A file is not in any format the engine reads."""


class ModelPackError(BioscanError):
    """A model pack is missing, corrupt or incompatible."""


class LibraryError(BioscanError):
    """A reference library is missing, corrupt or built with another model."""
