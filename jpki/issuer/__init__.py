"""The issuing side (J-LIS and the municipal office).

Holder data, the certificate profile, the test CA and its servers (CRL, OCSP), card contents
and provisioning.
"""
