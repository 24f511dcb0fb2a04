"""cgmbench: benchmark and evaluation suite for conditional generative models.

Data flows one way: task spec -> conditions -> generator -> samples -> features ->
statistics -> run record -> leaderboard / plots.
"""

__version__ = "0.1.0"
