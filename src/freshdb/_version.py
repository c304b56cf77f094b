"""The version of freshdb (recorded in the labels of every container it makes)."""

__version__ = "0.1.0"
