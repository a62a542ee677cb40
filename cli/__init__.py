"""Nudge's operator command line (`nudge` / `python -m cli`): commands that act on a stack's data."""
