"""Benchmarks a user runs through the CLI (`hostrt bench compare`)."""
