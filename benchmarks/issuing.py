"""The test CA's fast paths, each figure beside its baseline, sampled in turn in one run.

    .venv/bin/python benchmarks/issuing.py [--quick] [--profile]

| figure                                       | baseline                               | goal   |
| (a) `jpki card create`, in process           | four RSA-2048 key generations (the     | ≤ 1.3× |
|                                              | card's four private keys)              |        |
| (b) loading the CA and issuing a card's two  | the same on a CA that has issued few   | ≤ 1.1× |
|     certificates, with 20,000 already issued |                                        |        |
| (c) OCSP requests/s of `jpki ca serve`       | a stdlib ThreadingHTTPServer answering | ≥ 0.7× |
|                                              | a fixed body of the same size          |        |
| (c) the same with 20,000 issued              | `jpki ca serve` with few issued        | ± 10 % |

"In turn" means one sample of the figure, then one of its baseline, and so on (the servers: one
batch of requests each, the order rotated every round), so a change in the machine's load hits
both alike. Times are medians in ms, rates medians of per-batch requests/s; "×" is figure /
baseline (a time ratio for (a) and (b), lower is better; a rate ratio for (c), higher is better).

(b) starts from a new CA and from a copy of it whose record is filled to 20,000 issued entries by
inserting rows directly (issuing them would take a minute of RSA signatures); what is timed is
real issuance: `TestCA.load`, as every `jpki card create` does, then both certificates signed
and recorded in one synced transaction, as `provision_card` does, with keys made beforehand
(their generation does not depend on the CA and would drown the comparison in its variance).

(c) uses one client thread, a new connection per request (both servers speak HTTP/1.0, so
neither keeps connections alive), and OCSP requests without a nonce, which `jpki ca serve`
answers from responses it signed once (RFC 5019); 64 serials, asked in turn after a warm-up.
Requests with a nonce, which must be signed each time, are shown for information. Both servers
are separate processes that log one line per request to a discarded stderr.

--profile prints where one in-process `jpki card create` spends its time (cProfile).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime
import http.client
import io
import os
import pstats
import re
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from cryptography.x509 import ocsp  # noqa: E402

from cli.main import main as jpki_main  # noqa: E402
from jpki.certificates import CertificateKind  # noqa: E402
from jpki.issuer import ca as ca_module  # noqa: E402
from jpki.issuer.ca import DATABASE_FILE, IssuedCertificate, TestCA  # noqa: E402
from jpki.issuer.holder import Holder, Sex  # noqa: E402

PREFILLED = 20_000
SERIALS_ASKED = 64
HOLDER = Holder(
    name="試験　太郎",
    birth_date=datetime.date(1980, 2, 17),
    sex=Sex.MALE,
    address="東京都千代田区千代田１番１号",
    my_number="123456789018",
)
TRIVIAL_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
body = sys.stdin.buffer.read()

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "application/ocsp-response")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(f"http://127.0.0.1:{server.server_address[1]}/ocsp", flush=True)
server.serve_forever()
"""


@dataclass
class Row:
    figure: str
    value: float
    baseline: str
    baseline_value: float
    unit: str
    goal: str
    met: bool | None

    @property
    def ratio(self) -> float:
        return self.value / self.baseline_value


def in_turn(calls: list[Callable[[], object]], rounds: int) -> list[list[float]]:
    """Samples (ms) of each call, one of each per round, the order rotated every round."""
    samples: list[list[float]] = [[] for _ in calls]
    for round_number in range(rounds):
        shift = round_number % len(calls)
        for index in [*range(shift, len(calls)), *range(shift)]:
            start = time.perf_counter()
            calls[index]()
            samples[index].append((time.perf_counter() - start) * 1000)
    return samples


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


# --- (a) jpki card create -------------------------------------------------------------------


def card_creator(home: Path) -> Callable[[], object]:
    """One `jpki card create` in this process, each to a new card file."""
    counter = iter(range(10**9))

    def create() -> None:
        card = home / f"card-{next(counter)}.json"
        argv = ["card", "create", "--card", str(card), "--auth-pin", "1234", "--sign-pin", "ABC123"]
        with quiet():
            try:
                jpki_main(argv)
            except SystemExit as exit_:  # a failure: jpki printed why
                raise RuntimeError(f"jpki card create failed ({exit_.code})") from None

    return create


CARD_KEYS = 4  # authentication, signature, card-face card key, common AP key


def card_key_generations() -> None:
    for _ in range(CARD_KEYS):
        rsa.generate_private_key(public_exponent=65537, key_size=2048)


def card_create(work: Path, rounds: int) -> Row:
    home = work / "a"
    TestCA.create(home / "ca")
    os.environ["JPKI_HOME"] = str(home)
    create = card_creator(home)
    create()  # imports and first-use costs out of the samples
    created, generated = in_turn([create, card_key_generations], rounds)
    figure, baseline = statistics.median(created), statistics.median(generated)
    return Row("(a) jpki card create, in process", figure, f"{CARD_KEYS} × RSA-2048 key generation",
               baseline, "ms", "≤ 1.3×", figure / baseline <= 1.3)  # fmt: skip


def profile_card_create(work: Path) -> None:
    home = work / "profile"
    TestCA.create(home / "ca")
    os.environ["JPKI_HOME"] = str(home)
    create = card_creator(home)
    create()
    profiler = cProfile.Profile()
    profiler.enable()
    create()
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


# --- (b) issuing at 20,000 issued vs at 0 ---------------------------------------------------


def prefill(directory: Path, count: int) -> None:
    """Add `count` entries to a CA's record the fast way: rows inserted directly, shaped like
    the ones issuing writes (half authentication, half signature, a few revoked)."""
    database = directory / DATABASE_FILE
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        (first,) = connection.execute("SELECT next_serial FROM ca").fetchone()
        not_after = datetime.datetime(2031, 2, 17, 14, 59, 59, tzinfo=datetime.UTC)
        entries = (
            IssuedCertificate(
                serial=first + index,
                kind=CertificateKind.SIGNATURE if index % 2 else CertificateKind.AUTHENTICATION,
                subject=(
                    f"CN=20260401120000{index % 100000:05d}13113001A,L=Shibuya-ku,L=Tokyo-to,C=JP"
                    if index % 2
                    else f"CN={secrets.token_hex(7).upper()}13113001A,C=JP"
                ),
                not_after=not_after,
                holder_name=HOLDER.name,
                label=None,
                revocation=None
                if index % 97
                else ca_module.Revocation(
                    not_after.replace(year=2027), ca_module.RevocationReason.SUPERSEDED
                ),
            )
            for index in range(count)
        )
        connection.execute("BEGIN")
        connection.executemany(
            f"INSERT INTO issued ({ca_module.ISSUED_COLUMNS}, changed) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
            (entry.to_row() for entry in entries),
        )
        connection.execute("UPDATE ca SET next_serial = ?", (first + count,))
        connection.execute("COMMIT")
    finally:
        connection.close()


def issuer(directory: Path, keys: list[rsa.RSAPrivateKey]) -> Callable[[], object]:
    """What a `jpki card create` asks of the CA: load it, then both certificates in one batch."""

    def issue() -> None:
        test_ca = TestCA.load(directory)
        with test_ca.batch():
            test_ca.issue_authentication_certificate(HOLDER, keys[0].public_key())
            test_ca.issue_signature_certificate(HOLDER, keys[1].public_key())
        test_ca.close()

    return issue


def issuing(empty: Path, full: Path, rounds: int) -> Row:
    keys = [rsa.generate_private_key(65537, 2048) for _ in range(2)]
    at_full, at_empty = issuer(full, keys), issuer(empty, keys)
    at_full(), at_empty()
    full_samples, empty_samples = in_turn([at_full, at_empty], rounds)
    figure, baseline = statistics.median(full_samples), statistics.median(empty_samples)
    issued, few = (len(TestCA.load(directory).issued) for directory in (full, empty))
    return Row(f"(b) load CA + issue a card's 2 certs, {issued:,} issued", figure,
               f"the same, {few} issued", baseline, "ms", "≤ 1.1×",
               figure / baseline <= 1.1)  # fmt: skip


# --- (c) OCSP requests/s --------------------------------------------------------------------


def start(
    command: list[str], home: Path | None = None, stdin: bytes | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "NO_PROXY": "*"}
    if home is not None:
        env["JPKI_HOME"] = str(home)
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    if stdin is not None:
        process.stdin.write(stdin)
    process.stdin.close()
    match = re.search(rb"(http://[\d.]+:\d+/ocsp)", process.stdout.readline())
    if not match:
        process.kill()
        raise RuntimeError(f"{' '.join(command)} did not start")
    return process, match[1].decode()


def requests_for(directory: Path, nonce: bool) -> list[bytes]:
    """OCSP requests for SERIALS_ASKED certificates the CA issued, spread over its record."""
    test_ca = TestCA.load(directory)
    entries = [entry for entry in test_ca.issued if entry.kind is CertificateKind.AUTHENTICATION]
    step = max(1, len(entries) // SERIALS_ASKED)
    issuer_certificate = test_ca.authentication.certificate
    probe = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(issuer_certificate, issuer_certificate, hashes.SHA1())
        .build()
    )
    requests = []
    for entry in entries[::step][:SERIALS_ASKED]:
        builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
            probe.issuer_name_hash, probe.issuer_key_hash, entry.serial, hashes.SHA1()
        )
        if nonce:
            builder = builder.add_extension(x509.OCSPNonce(secrets.token_bytes(32)), critical=False)
        requests.append(builder.build().public_bytes(serialization.Encoding.DER))
    return requests


def ask(url: str, request: bytes) -> bytes:
    host, port = re.match(r"http://([\d.]+):(\d+)", url).groups()  # type: ignore[union-attr]
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("POST", "/ocsp", request, {"Content-Type": "application/ocsp-request"})
        reply = connection.getresponse()
        body = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"{url} answered {reply.status}")
        return body
    finally:
        connection.close()


def rates(targets: list[tuple[str, list[bytes]]], rounds: int, batch: int) -> list[float]:
    """Median requests/s of each (url, requests), one batch each per round, in turn."""

    def batch_of(url: str, requests: list[bytes]) -> Callable[[], object]:
        def run() -> None:
            for index in range(batch):
                ask(url, requests[index % len(requests)])

        return run

    samples = in_turn([batch_of(url, requests) for url, requests in targets], rounds)
    return [statistics.median(batch * 1000 / ms for ms in series) for series in samples]


def serving(empty: Path, full: Path, rounds: int, batch: int) -> list[Row]:
    processes = []
    try:
        servers = {}
        for name, directory in (("empty", empty), ("full", full)):
            process, url = start([sys.executable, "-m", "cli", "ca", "serve", "--port", "0"],
                                 directory.parent)  # fmt: skip
            processes.append(process)
            servers[name] = (url, requests_for(directory, nonce=False))
        full_url, full_requests = servers["full"]
        fixed_body = ask(full_url, full_requests[0])  # the trivial server's answer: same size
        process, trivial_url = start([sys.executable, "-c", TRIVIAL_SERVER], stdin=fixed_body)
        processes.append(process)
        for url, requests in servers.values():  # warm-up: every response signed once
            for request in requests:
                ask(url, request)
        trivial = (trivial_url, full_requests)
        trivial_rate, empty_rate, full_rate = rates(
            [trivial, servers["empty"], servers["full"]], rounds, batch
        )
        with_nonce = (servers["empty"][0], requests_for(empty, nonce=True))
        nonce_rate, trivial_again = rates([with_nonce, trivial], max(2, rounds // 2), batch)
    finally:
        for process in processes:
            process.terminate()
            process.wait()
    issued = len(TestCA.load(full).issued)
    return [
        Row("(c) jpki ca serve, OCSP req/s, new CA", empty_rate, "stdlib ThreadingHTTPServer,"
            " fixed body", trivial_rate, "req/s", "≥ 0.7×", empty_rate / trivial_rate >= 0.7),
        Row(f"(c) jpki ca serve, OCSP req/s, {issued:,} issued", full_rate,
            "stdlib ThreadingHTTPServer, fixed body", trivial_rate, "req/s", "≥ 0.7×",
            full_rate / trivial_rate >= 0.7),
        Row(f"(c) jpki ca serve, OCSP req/s, {issued:,} issued", full_rate,
            "jpki ca serve, new CA", empty_rate, "req/s", "0.9–1.1×",
            0.9 <= full_rate / empty_rate <= 1.1),
        Row("    (info) requests with a nonce, signed each", nonce_rate,
            "stdlib ThreadingHTTPServer, fixed body", trivial_again, "req/s", "", None),
    ]  # fmt: skip


# --- output ---------------------------------------------------------------------------------


def show(rows: list[Row]) -> None:
    width = max(len(row.figure) for row in rows)
    base_width = max(len(row.baseline) for row in rows)
    print(f"{'figure':<{width}}  {'value':>10}  {'baseline':<{base_width}}  {'value':>10}  "
          f"{'ratio':>6}  goal")  # fmt: skip
    for row in rows:
        unit = " ms" if row.unit == "ms" else "/s"
        verdict = "" if row.met is None else ("  met" if row.met else "  NOT MET")
        print(f"{row.figure:<{width}}  {row.value:>8.1f}{unit}  {row.baseline:<{base_width}}  "
              f"{row.baseline_value:>8.1f}{unit}  {row.ratio:>5.2f}×  "
              f"{row.goal}{verdict}".rstrip())  # fmt: skip


def issuer_rows(work: Path, *, quick: bool) -> list[Row]:
    """The CA's figures, (a) to (c), in a fresh CA under `work` and a copy filled to 20,000."""
    card_rounds, issue_rounds, serve_rounds, batch = (
        (15, 30, 4, 100) if quick else (100, 150, 12, 200)
    )
    empty = work / "empty" / "ca"
    TestCA.create(empty)
    full = work / "full" / "ca"
    shutil.copytree(empty, full)
    prefill(full, PREFILLED)
    rows = [card_create(work, card_rounds), issuing(empty, full, issue_rounds)]
    return rows + serving(empty, full, serve_rounds, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (about 6 s)")
    parser.add_argument("--profile", action="store_true", help="profile one card create")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jpki-issuing-") as temporary:
        if arguments.profile:
            profile_card_create(Path(temporary))
            return
        rows = issuer_rows(Path(temporary), quick=arguments.quick)
    load = os.getloadavg()
    print(f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"record filled to {PREFILLED:,} entries (rows inserted)")  # fmt: skip
    show(rows)


if __name__ == "__main__":
    main()
