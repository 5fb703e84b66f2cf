"""The card's applications as data: each a DF with its EFs, PINs, keys and access rules."""
