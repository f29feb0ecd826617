"""One lifecycle operation per module, each readable top to bottom over state.py."""
