"""Error types shared by stages that need optional vendor toolchains."""


class ToolchainError(RuntimeError):
    """A vendor toolchain or runtime the command needs is not installed here; nothing was written."""
