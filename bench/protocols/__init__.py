"""Protocols: the unit of work from a suite's ``[[protocol]]`` table to typed cell records.

:mod:`bench.protocols.base` is the interface, :mod:`bench.protocols.context` the run
context; ``features`` and ``finetune`` are the builtin protocol plugins (entry points).
"""
