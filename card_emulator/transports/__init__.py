"""The card's edges: in memory (a Python object) and the vpcd socket. No card logic here."""
