"""The host side of a My Number card: test CA, provisioning, and (soon) sessions for any card."""
