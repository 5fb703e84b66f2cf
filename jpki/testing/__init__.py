"""Testing with the emulator: a pytest plugin (`plugin.py`, installed as the `pytest11` entry
point `jpki`: fixtures jpki_ca, virtual_card, pcsc_card, jpki_clock) and a private pcscd
(`pcscd.py`) that needs neither root nor a namespace for the test process."""
