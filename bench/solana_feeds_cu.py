"""Compute units and transaction bytes of UpdateFeed (tag 48) of the Tessera Solana program.

Deploys contracts/solana/tessera.so into LiteSVM (the Agave runtime embedded in solders), initializes
a committee with a single key, then measures the first update of several feeds (it creates the feed
account: a PDA bump search plus a CPI to the system program, which vary with the feed id), the update
of an existing feed, and the two cheap refusals.

    .venv/bin/python bench/solana_feeds_cu.py
"""

from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from solders.clock import Clock  # noqa: E402
from solders.compute_budget import set_compute_unit_limit  # noqa: E402
from solders.instruction import Instruction  # noqa: E402
from solders.keypair import Keypair  # noqa: E402
from solders.litesvm import LiteSVM  # noqa: E402
from solders.transaction import Transaction  # noqa: E402
from solders.transaction_metadata import FailedTransactionMetadata  # noqa: E402

from adapters.solana.feeds import UPDATE_FEED_CU_LIMIT, update_feed_ix  # noqa: E402
from adapters.solana.deploy import deploy_program_litesvm, load_program_bytes  # noqa: E402
from adapters.solana.program import init_committee_ix  # noqa: E402
from attest.bls import public_key, sign  # noqa: E402
from relay.feeds.report import FeedReport  # noqa: E402
from relay.feeds.signed import SignedReport  # noqa: E402

DOMAIN = 900
SECRET = 0x5EC12E7
FEEDS = ["ETH/USD", "BTC/USD", "SOL/USD", "EUR/USD", "XAU/USD", "LINK/ETH", "ATOM/USD", "DOT/USD"]


def _run(svm: LiteSVM, payer: Keypair, ix: Instruction, expect_failure: bool = False) -> tuple[int, int]:
    """(program CU, transaction bytes incl. a compute-budget instruction)."""
    tx = Transaction.new_signed_with_payer([set_compute_unit_limit(UPDATE_FEED_CU_LIMIT), ix], payer.pubkey(),
                                           [payer], svm.latest_blockhash())
    result = svm.send_transaction(tx)
    svm.expire_blockhash()
    failed = isinstance(result, FailedTransactionMetadata)
    if failed != expect_failure:
        raise SystemExit(f"unexpected outcome: {result}")
    logs = result.meta().logs() if failed else result.logs()
    for line in logs:
        match = re.search(rf"Program {ix.program_id} consumed (\d+) of", line)
        if match:
            return int(match.group(1)), len(bytes(tx))
    raise SystemExit("no compute-unit line for the program")


def _signed(feed_id: str, round_: int, price: int) -> SignedReport:
    report = FeedReport(feed_id, round_, price, 50_000_000, 8, 4, 1_795_431_722_700 + round_ * 1000,
                        1_795_431_723_000 + round_ * 1000)
    return SignedReport(report, 1, sign(SECRET, report.digest(1)))


def main() -> int:
    svm = LiteSVM()
    payer = Keypair()
    svm.airdrop(payer.pubkey(), 100 * 10**9)
    so = load_program_bytes()
    program_id = deploy_program_litesvm(svm, payer, so)
    clock = svm.get_clock()
    svm.set_clock(Clock(clock.slot, 1_700_000_000, 0, 0, 1_700_000_000))
    _run(svm, payer, init_committee_ix(program_id, payer.pubkey(), domain=DOMAIN, epoch=1, n=1, t=1,
                                       group_key=public_key(SECRET)))

    first, updates, size = [], [], 0
    for feed_id in FEEDS:
        units, size = _run(svm, payer, update_feed_ix(program_id, payer.pubkey(), _signed(feed_id, 1, 345_000_000_000)))
        first.append(units)
        units, _ = _run(svm, payer, update_feed_ix(program_id, payer.pubkey(), _signed(feed_id, 2, 346_000_000_000)))
        updates.append(units)
    stale, _ = _run(svm, payer, update_feed_ix(program_id, payer.pubkey(), _signed("ETH/USD", 2, 1)), True)
    bad = _signed("ETH/USD", 3, 1)
    tampered = SignedReport(FeedReport("ETH/USD", 3, 2, 0, 8, 1, bad.report.observed_at, bad.report.published_at),
                            1, bad.signature)
    refused, _ = _run(svm, payer, update_feed_ix(program_id, payer.pubkey(), tampered), True)

    def spread(values: list[int]) -> str:
        return f"{min(values):>7,} / {int(statistics.median(values)):>7,} / {max(values):>7,}"

    print(f"Tessera Solana program ({len(so)} bytes), UpdateFeed (LiteSVM, default features, {len(FEEDS)} feeds):")
    print("                                               min /  median /     max")
    print(f"  first update (creates the feed account)  {spread(first)} CU")
    print(f"  update of an existing feed               {spread(updates)} CU")
    print(f"  refused: stale round                     {stale:>7,} CU")
    print(f"  refused: tampered report (pairing fails) {refused:>7,} CU")
    print(f"  transaction size (with a compute-budget instruction): {size} of 1,232 bytes")
    worst = max(first + updates)
    print(f"worst case {worst:,} CU: {'within' if worst <= UPDATE_FEED_CU_LIMIT else 'OVER'} the adapter's "
          f"{UPDATE_FEED_CU_LIMIT:,} CU limit")
    return 0 if worst <= UPDATE_FEED_CU_LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
