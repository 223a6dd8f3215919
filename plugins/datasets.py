"""Builtin LeukoBench plugin (being written)."""
