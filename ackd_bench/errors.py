"""User-facing errors: the CLI prints their message on one line and exits with status 2."""


class AckdError(Exception):
    """A problem with the user's input or files, reported without a traceback."""


class DatasetError(AckdError):
    """A dataset directory, manifest or shard is missing, inconsistent or corrupt."""


class RecipeError(AckdError):
    """A recipe name or recipe file is unknown or malformed."""
