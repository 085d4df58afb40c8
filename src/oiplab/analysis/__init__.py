"""Numerical analyses of trained models: arrays in, arrays and numbers out; no files, no plots."""
