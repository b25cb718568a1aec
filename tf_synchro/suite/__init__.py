"""Experiment suites: the stages, rows and report of the demo and experiments binaries."""
