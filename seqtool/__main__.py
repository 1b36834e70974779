"""`python -m seqtool` (also what torchrun launches)."""

from seqtool.cli import main

main()
