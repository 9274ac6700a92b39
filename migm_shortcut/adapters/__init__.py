"""Adapters that put real model families behind the package's model interface (see ``migm_shortcut.interface``)."""
