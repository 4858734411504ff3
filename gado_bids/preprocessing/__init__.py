"""Clinica t1-linear-like preprocessing: N4, affine registration to MNI, crop, normalise, 128^3."""
