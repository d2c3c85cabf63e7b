"""Robustness: corruptions and attacks of test images, for `vitmae robustness`."""
