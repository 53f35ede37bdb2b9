"""Local stand-ins for every outside service Clawdet talks to (see sandbox/README.md)."""

from .runtime import Sandbox

__all__ = ["Sandbox"]
