"""`python -m cli` runs the `jpki` command line."""

from cli.main import main

main()
