"""The card's vocabulary: what any client of a real My Number card also knows.

APDU codec, status words, AIDs and file ids, the PINs with their rules, the keys and their
certificates, and the emulator's administration protocol (lifecycle.md §6). Importing it loads
nothing of the emulator (no engine, no state, no transport).
"""
