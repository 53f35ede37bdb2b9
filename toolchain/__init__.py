"""The Pulumi engine toolchain, build time only: find or build, offline, the CLI, the language host
and the offline stand-in provider plugins. Standard library Python; see README.md beside it."""

from toolchain.engine import Toolchain, ToolchainError, cache_key, cache_root, ensure, find

__all__ = ["Toolchain", "ToolchainError", "cache_key", "cache_root", "ensure", "find"]
