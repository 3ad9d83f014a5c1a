"""Benchmarks: every stage of the pipeline beside its floor, measured in one run.

``make bench`` (or ``python -m bench``) prints a table of figures and ratios and rewrites
``bench/RESULTS.md`` with them and a description of the machine.
"""
