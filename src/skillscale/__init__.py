"""skillscale: datamix ablations of skill-dependent compute-optimal scaling."""

__version__ = "0.1.0"
