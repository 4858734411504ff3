"""Participant- and group-level orchestration: loops, failure isolation, summaries."""
