"""The card panel (`jpki serve --panel`) in a real headless browser, Debian's Chromium driven by
its chromedriver: signed in with the token, its Remove and Insert buttons take the card out of
the reader and put it back as pyscard sees it, a fault typed into it gives pyscard its status
word, and its live APDU log and counters follow pyscard's VERIFYs without ever showing a PIN.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from card_emulator.vocabulary.identifiers import JpkiFile
from jpki.testing.pcscd import PrivatePcscd, wait_for
from tests.conftest import AUTH_PIN, CARDS
from tests.pcsc.harness import READER, ServedCard
from tests.pcsc.test_control import (
    READ_BINARY,
    SELECT_JPKI,
    WRONG_AUTH_PIN,
    select_ef,
    trace_events,
    verify,
)
from tests.pcsc.test_whole_card import connected

pytestmark = [pytest.mark.reader_stack, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PAGE_TIMEOUT = 15  # seconds the page gets to show a change


@pytest.fixture
def panel(pcscd: PrivatePcscd, tmp_path: Path) -> Iterator[ServedCard]:
    home = tmp_path / "jpki-home"
    home.mkdir()
    shutil.copyfile(CARDS / "taro.json", home / "card.json")
    with ServedCard(home / "card.json", home=home, args=["--panel"]) as served:
        yield served


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # as root (CI), Chromium's sandbox cannot start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(argument)
    service = Service(executable_path=shutil.which("chromedriver") or CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def until(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    """What `condition` returns once it is truthy: the page is watched, never slept on."""
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
        TimeoutException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    # The panel redraws its lists as the card changes: an element found may be gone at once.
    ignored = (NoSuchElementException, StaleElementReferenceException)
    try:
        return WebDriverWait(driver, PAGE_TIMEOUT, ignored_exceptions=ignored).until(condition)
    except TimeoutException:
        raise AssertionError(f"the panel never showed {what}") from None


def click(driver: Any, element_id: str) -> None:
    from selenium.webdriver.common.by import By

    until(driver, lambda d: d.find_element(By.ID, element_id).click() or True, element_id)


def text_of(driver: Any, element_id: str) -> str | None:
    """The element's text as shown, or None while there is none (read in one step: the page
    may replace the element at any moment)."""
    text: str | None = driver.execute_script(
        "const found = document.getElementById(arguments[0]); return found && found.innerText",
        element_id,
    )
    return text


def sign_in(driver: Any, served: ServedCard) -> None:
    from selenium.webdriver.common.by import By

    driver.get(served.panel_url)
    driver.find_element(By.ID, "token").send_keys("not-the-token")
    click(driver, "sign-in")
    assert until(driver, lambda d: text_of(d, "sign-in-error"), "a refusal") == (
        "That is not the token."
    )
    driver.find_element(By.ID, "token").send_keys(served.token)
    click(driver, "sign-in")
    until(driver, lambda d: d.execute_script("return document.body.dataset.ready"), "the slots")
    cookies = driver.get_cookies()
    assert [(c["httpOnly"], c["sameSite"]) for c in cookies] == [(True, "Strict")]


def log_rows(driver: Any) -> list[dict[str, str]]:
    """The panel's APDU log as shown: one dict per row, newest first."""
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#log-body tr')].map(row => ({"
        "kind: row.dataset.kind, cells: [...row.cells].map(cell => cell.textContent)}))"
    )
    names = ("seq", "time", "slot", "kind", "command", "response", "text")
    return [dict(zip(names, row["cells"], strict=True)) for row in rows]


def test_the_panel_drives_the_card_and_never_shows_a_pin(panel: ServedCard, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    assert panel.panel_url == f"http://127.0.0.1:{panel.port}/"
    sign_in(browser, panel)
    assert text_of(browser, "slot-0-card") == str(panel.home / "card.json")
    assert (text_of(browser, "slot-0-state") or "").startswith("inserted")  # powered in use

    # Remove and Insert, as a pyscard client of pcscd sees them.
    click(browser, "remove-0")
    wait_for(READER, present=False)
    until(browser, lambda d: text_of(d, "slot-0-state") == "removed", "the card removed")
    click(browser, "insert-0")
    wait_for(READER, present=True)
    until(browser, lambda d: (text_of(d, "slot-0-state") or "").startswith("in"), "it inserted")

    # A fault typed into the panel: the client gets its status word; cleared, it is gone.
    browser.find_element(By.ID, "fault-spec-0").send_keys("sw=6A82,ins=B0")
    click(browser, "fault-add-0")
    until(browser, lambda d: "sw=6A82,ins=B0" in (text_of(d, "faults-0") or ""), "the fault")
    with connected(READER) as card:
        card.send(SELECT_JPKI)
        card.send(select_ef(JpkiFile.AUTHENTICATION_CERTIFICATE))
        assert card.send(READ_BINARY) == (b"", 0x6A82)
        until(browser, lambda d: "fired 1×" in (text_of(d, "faults-0") or ""), "it fired")
        click(browser, "fault-clear-0-1")
        until(browser, lambda d: text_of(d, "faults-0") == "no faults", "the fault cleared")
        assert card.send(READ_BINARY)[1] == 0x9000

        # PINs from pyscard: the log shows each VERIFY masked, the counters follow it live.
        card.send(select_ef(JpkiFile.AUTHENTICATION_PIN))
        assert card.send(verify(WRONG_AUTH_PIN)) == (b"", 0x63C2)
        until(browser, lambda d: "2/3" in (text_of(d, "counter-0-auth") or ""), "2 tries of 3")
        assert card.send(verify(AUTH_PIN)) == (b"", 0x9000)
        until(browser, lambda d: "3/3" in (text_of(d, "counter-0-auth") or ""), "3 tries of 3")

    masked = "0020008004********"
    rows = until(
        browser,
        lambda d: [r for r in log_rows(d) if r["command"] == masked] or None,
        "the VERIFYs masked",
    )
    assert [row["response"] for row in rows] == ["9000", "63C2"]  # newest first
    # Nowhere a PIN: not in a command or a note of the log (hex or ASCII), not beside the slots.
    # (Responses are the card's data, a certificate's bytes among them: not secret.)
    shown = [row["command"] + " " + row["text"] for row in log_rows(browser)]
    shown.append(text_of(browser, "slots") or "")
    for pin in (AUTH_PIN, WRONG_AUTH_PIN):
        assert not [text for text in shown if pin.hex().upper() in text.upper()]
        assert not [text for text in shown if pin.decode() in text]
    kinds = {row["kind"] for row in log_rows(browser)}
    assert {"removed", "inserted", "fault", "apdu"} <= kinds
    trace_events(panel.home, [AUTH_PIN])
