"""Command-line entry points: thin wrappers that parse, configure and hand over to workflows."""
