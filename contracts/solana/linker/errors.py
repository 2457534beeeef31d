"""The one error type of the linker."""


class BuildError(RuntimeError):
    """The program could not be built; the message says which file or symbol and what to change."""
