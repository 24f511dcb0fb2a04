"""The ``cgmbench`` command line: :mod:`.main` (run, list, info, demo, weights, train), :mod:`.results`
(sweep, leaderboard, plot, submit), :mod:`.metrics` (fid, score, stats)."""

from cgmbench.cli.main import main

__all__ = ["main"]
