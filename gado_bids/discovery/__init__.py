"""Finding the input: BIDS validation, pybids queries for ce- scans and their non-contrast partner."""
