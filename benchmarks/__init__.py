"""freshdb's benchmarks, side by side with the peers (run: ``make bench``; see README.md)."""
