"""Talking to any My Number card, real or virtual: connection → APDU protocol → sessions."""
