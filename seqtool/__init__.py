"""seqtool: recurrent sequence modeling from the command line."""

__version__ = "0.1.0"
