"""Durable card state: the card image, PIN reference data, and where the image lives."""
