"""The `vitmae` command (`main`: parsing and dispatch) and `vitmae demo` (`demo`)."""

from vitmae.cli.commands import main

__all__ = ["main"]
