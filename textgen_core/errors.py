"""User-facing errors: each message says what is wrong and what to do about it.

The CLI prints ``error: <message>`` and exits with status 2 for any of these; the app shows the
message. Anything else escaping the engine is a bug.
"""


class TextgenError(Exception):
    """Base class of every error the user can fix by changing input or settings."""


class CorpusError(TextgenError):
    """The text file cannot be used for training (empty, binary, too short, ...)."""


class ConfigError(TextgenError):
    """A setting is out of range or settings contradict each other."""


class ModelFolderError(TextgenError):
    """A model folder is missing files, is inconsistent, or is not in the expected format."""


class HubError(TextgenError):
    """The Hugging Face Hub could not be reached or the repo could not be resolved."""


class TrainingDiverged(TextgenError):
    """The loss became NaN or infinite; the best weights so far are kept."""


class UnsafeFileError(ModelFolderError):
    """A path is not a regular file, is too large, leads out of its folder, or is not valid JSON."""


class WriteError(TextgenError):
    """A file could not be written (full disk, read-only folder, no permission)."""
