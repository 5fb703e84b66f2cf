"""The `jpki` command line: thin wrappers over `jpki` and `card_emulator`."""
