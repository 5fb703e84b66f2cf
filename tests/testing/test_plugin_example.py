"""The README's example: a login against a real reader stack (pcscd, vpcd, pyscard) in five lines,
with the plugin's fixtures and nothing else."""

from __future__ import annotations

import pytest

from jpki.client.connection import PcscConnection
from jpki.client.protocol import ApduProtocol
from jpki.client.session import JpkiSession
from jpki.client.signing import answer_login
from jpki.relying_party.login import new_challenge, verify_login
from jpki.testing.plugin import JpkiCA, PcscCardFactory

pytestmark = pytest.mark.reader_stack


def test_login_through_a_real_reader(pcsc_card: PcscCardFactory, jpki_ca: JpkiCA) -> None:
    challenge = new_challenge()
    with PcscConnection(pcsc_card().reader) as connection:
        response = answer_login(JpkiSession(ApduProtocol(connection)), challenge, "1234")
    assert verify_login(challenge, response, jpki_ca.trust_store).identity
