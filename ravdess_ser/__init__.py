"""Speech emotion recognition on RAVDESS, as plain functions over paths and arrays.

The DVC stage scripts under ``stages/`` are thin wrappers around this package;
everything here can be used and tested without DVC.
"""
