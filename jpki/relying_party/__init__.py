"""What a relying party runs: trust anchors, certificate and signature verification,
revocation checking and login verification.

It imports neither `jpki.issuer`, nor `jpki.client`, nor `card_emulator`, so a service can take
this package alone.
"""
