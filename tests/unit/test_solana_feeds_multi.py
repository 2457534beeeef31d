"""Feed roots on the Tessera Solana program (contracts/solana/src/feeds.c) in LiteSVM: UpdateFeeds
(every report of a signed feed root, one pairing), VerifyFeedRoot + UpdateFeedsWithProofs (any
reports of a verified root, no pairing), CloseFeedRoot; the shared vectors
(tests/vectors/feeds_multi_v1.json) through the program; every refusal; what fits in 1,232 bytes;
CU per feed at 1/4/16 feeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from solders.clock import Clock
from solders.compute_budget import set_compute_unit_limit
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.transaction import Transaction

from adapters.solana.feeds import (
    FEED_ROOT_ACCOUNT_LEN,
    close_feed_root_ix,
    feed_root_address,
    feed_root_attestation,
    raw_update_feeds_ix,
    update_feeds_ix,
    update_feeds_with_proofs_ix,
    verify_feed_root_ix,
)
from adapters.solana.program import Attestation, G1Hint, ProgramErrorCode
from relay.feeds.multi import FeedRoot, SignedFeedRoot
from relay.feeds.report import FeedReport
from tests.support.solana import Chain, custom_error
from tests.unit.test_solana_feeds import Dealt, feed_account, make_chain, program_units, vector_committee  # noqa: F401

E = ProgramErrorCode
VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "feeds_multi_v1.json").read_text())
ROOTS = {r["name"]: r for r in VECTORS["signed_roots"]}
VECTOR_NOW_S = 1_795_431_723
PACKET = 1232


def _b(h: str) -> bytes:
    return bytes.fromhex(h.removeprefix("0x"))


def signed_root(name: str) -> SignedFeedRoot:
    case = ROOTS[name]
    return SignedFeedRoot(FeedRoot.of([FeedReport.decode(_b(r)) for r in case["reports"]]), case["epoch"],
                          _b(case["signature"]))


def sign_root(dealt: Dealt, reports: list[FeedReport]) -> SignedFeedRoot:
    root = FeedRoot.of(reports)
    return SignedFeedRoot(root, dealt.committee.epoch, dealt.sign_digest(root.digest(dealt.committee.epoch)))


@pytest.fixture
def chain() -> Chain:
    return make_chain(LiteSVM())


def verify_ix(chain: Chain, signed: SignedFeedRoot, payer: Keypair | None = None):
    return verify_feed_root_ix(chain.program_id, (payer or chain.payer).pubkey(), feed_root_attestation(signed),
                               signed.root.leaf_count, signed.root.root)


def proofs_ix(chain: Chain, signed: SignedFeedRoot, indices: list[int]):
    items = [(i, signed.root.proof(i), signed.root.reports[i].encode()) for i in indices]
    return update_feeds_with_proofs_ix(chain.program_id, chain.payer.pubkey(), signed.root.root, items)


def tx_size(chain: Chain, ix) -> int:
    tx = Transaction.new_signed_with_payer([set_compute_unit_limit(1_400_000), ix], chain.payer.pubkey(),
                                           [chain.payer], chain.svm.latest_blockhash())
    return len(bytes(tx))


# --- UpdateFeeds ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["one feed", "four feeds"])
def test_update_feeds_stores_every_report_of_the_root(chain: Chain, name: str) -> None:
    signed = signed_root(name)
    meta = chain.ok(update_feeds_ix(chain.program_id, chain.payer.pubkey(), signed))
    assert bytes(meta.return_data().data) == signed.root.root
    for report in signed.root.reports:
        account = feed_account(chain, report.feed_id)
        assert account is not None and account.report == report
        assert account.root_signed and account.epoch == 1 and account.signature == signed.signature
        assert account.update_count == 1


def test_not_newer_reports_are_skipped_and_a_replayed_root_refused(chain: Chain) -> None:
    chain.ok(update_feeds_ix(chain.program_id, chain.payer.pubkey(), signed_root("one feed")))
    chain.ok(update_feeds_ix(chain.program_id, chain.payer.pubkey(), signed_root("four feeds")))
    assert feed_account(chain, "FEED/00").update_count == 1  # skipped, not overwritten
    assert feed_account(chain, "FEED/03").round == 11
    # Replay of the same root, and of an older one after a newer: nothing is newer, so refused
    # before the pairing (the pusher's preflight learns it without paying).
    chain.fails(E.FEED_STALE_ROUND, update_feeds_ix(chain.program_id, chain.payer.pubkey(), signed_root("four feeds")))
    chain.ok(update_feeds_ix(chain.program_id, chain.payer.pubkey(), signed_root("four feeds, next round")))
    chain.fails(E.FEED_STALE_ROUND, update_feeds_ix(chain.program_id, chain.payer.pubkey(), signed_root("four feeds")))
    assert {feed_account(chain, f"FEED/{i:02d}").round for i in range(4)} == {12}


def test_a_forged_root_signature_is_refused(chain: Chain) -> None:
    signed = signed_root("four feeds")
    other = signed_root("four feeds, next round")
    # σ of another root, with the hint of this root's digest: the pairing fails.
    forged = Attestation(1, other.signature, G1Hint.for_digest(signed.digest))
    reports = [r.encode() for r in signed.root.reports]
    chain.fails(E.SIGNATURE_INVALID, raw_update_feeds_ix(chain.program_id, chain.payer.pubkey(), forged, reports))
    # A report's own signature (feeds_v1's signed round) is no root signature either.
    single = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "feeds_v1.json").read_text())
    sig = _b(single["signed_round"]["signature"])
    chain.fails(E.SIGNATURE_INVALID, raw_update_feeds_ix(chain.program_id, chain.payer.pubkey(),
                                                         Attestation(1, sig, G1Hint.for_digest(signed.digest)), reports))
    chain.fails(E.SIGNATURE_INVALID, verify_feed_root_ix(chain.program_id, chain.payer.pubkey(), forged, 4,
                                                         signed.root.root))
    # The right σ under another leaf count is another digest (the hint no longer fits it).
    chain.fails(E.HINT_NOT_ON_CURVE, verify_feed_root_ix(chain.program_id, chain.payer.pubkey(),
                                                         feed_root_attestation(signed), 5, signed.root.root))
    assert feed_account(chain, "FEED/00") is None


def test_a_report_not_in_the_root_is_refused(chain: Chain) -> None:
    signed = signed_root("four feeds")
    reports = [r.encode() for r in signed.root.reports]
    reports[2] = signed_root("four feeds, next round").root.reports[2].encode()
    # UpdateFeeds recomputes the root: another digest, and the hint of the signed one does not fit it.
    chain.fails(E.HINT_NOT_ON_CURVE, raw_update_feeds_ix(chain.program_id, chain.payer.pubkey(),
                                                         feed_root_attestation(signed), reports))
    chain.ok(verify_ix(chain, signed))
    items = [(2, signed.root.proof(2), reports[2])]
    chain.fails(E.FEED_NOT_IN_ROOT, update_feeds_with_proofs_ix(chain.program_id, chain.payer.pubkey(),
                                                                signed.root.root, items))
    right = signed.root.reports[2].encode()
    for bad in ([(3, signed.root.proof(2), right)], [(2, signed.root.proof(2)[:1], right)],
                [(4, signed.root.proof(2), right)], [(2, signed.root.proof(2) + [bytes(32)], right)]):
        chain.fails(E.FEED_NOT_IN_ROOT, update_feeds_with_proofs_ix(chain.program_id, chain.payer.pubkey(),
                                                                    signed.root.root, bad))
    assert feed_account(chain, "FEED/02") is None


def test_reports_ahead_of_the_chain_clock_are_refused(chain: Chain) -> None:
    chain.set_time(VECTOR_NOW_S)
    ahead = signed_root("two feeds published a day ahead")
    chain.fails(E.FEED_AHEAD_OF_CLOCK, update_feeds_ix(chain.program_id, chain.payer.pubkey(), ahead))
    chain.ok(verify_ix(chain, ahead))  # the root itself carries no time
    chain.fails(E.FEED_AHEAD_OF_CLOCK, proofs_ix(chain, ahead, [0, 1]))
    chain.set_time(ROOTS["two feeds published a day ahead"]["published_at"] // 1000 - 120)
    chain.ok(proofs_ix(chain, ahead, [1, 0]))
    assert feed_account(chain, "FEED/01").round == 13


def test_shape_and_account_refusals(chain: Chain) -> None:
    signed = signed_root("four feeds")
    reports = [r.encode() for r in signed.root.reports]
    att = feed_root_attestation(signed)
    ix = raw_update_feeds_ix(chain.program_id, chain.payer.pubkey(), att, reports)
    chain.fails(E.FEED_REPORT_MALFORMED, type(ix)(ix.program_id, ix.data[:-1], ix.accounts))
    chain.fails(E.NOT_ENOUGH_ACCOUNTS, type(ix)(ix.program_id, ix.data, ix.accounts[:-1]))
    chain.fails(E.NOT_ENOUGH_ACCOUNTS, raw_update_feeds_ix(chain.program_id, chain.payer.pubkey(), att, []))
    for count in (0, 65):
        data = ix.data[:134] + bytes([count]) + ix.data[135:]
        chain.fails(E.FEED_ROOT_SIZE_INVALID, type(ix)(ix.program_id, data, ix.accounts))
    swapped = list(ix.accounts)
    swapped[3], swapped[4] = swapped[4], swapped[3]
    chain.fails(E.FEED_WRONG_ADDRESS, type(ix)(ix.program_id, ix.data, swapped))
    chain.fails(E.FEED_ROOT_NOT_VERIFIED, proofs_ix(chain, signed, [0]))
    chain.ok(verify_ix(chain, signed))
    chain.fails(E.FEED_ROOT_ALREADY_VERIFIED, verify_ix(chain, signed))
    chain.fails(E.FEED_ROOT_SIZE_INVALID, verify_feed_root_ix(chain.program_id, chain.payer.pubkey(), att, 65,
                                                              signed.root.root))


def test_close_feed_root(chain: Chain) -> None:
    signed = signed_root("four feeds")
    chain.ok(verify_ix(chain, signed))
    address = feed_root_address(chain.program_id, signed.root.root)[0]
    account = chain.svm.get_account(address)
    assert account.owner == chain.program_id and len(account.data) == FEED_ROOT_ACCOUNT_LEN
    rent = account.lamports
    stranger = Keypair()
    chain.svm.airdrop(stranger.pubkey(), 10**9)
    close = close_feed_root_ix(chain.program_id, stranger.pubkey(), signed.root.root, chain.payer.pubkey())
    chain.fails(E.CLOSE_TOO_EARLY, close, signers=(stranger,))
    chain.fails(E.RECIPIENT_WRONG, close_feed_root_ix(chain.program_id, chain.payer.pubkey(), signed.root.root,
                                                      stranger.pubkey()))
    before = chain.svm.get_balance(chain.payer.pubkey())
    chain.ok(close_feed_root_ix(chain.program_id, chain.payer.pubkey(), signed.root.root, chain.payer.pubkey()))
    assert chain.svm.get_balance(chain.payer.pubkey()) == before + rent - 5000
    chain.fails(E.FEED_ROOT_NOT_VERIFIED, proofs_ix(chain, signed, [0]))
    # Verified again, then closed by anyone once the retention has passed.
    chain.ok(verify_ix(chain, signed))
    clock = chain.svm.get_clock()
    chain.set_time(clock.unix_timestamp + 86_400)
    chain.ok(close, signers=(stranger,))


# --- the vectors through the program ------------------------------------------------------------


def test_vector_trees_and_proofs(chain: Chain, vector_committee: Dealt) -> None:  # noqa: F811
    for tree in VECTORS["trees"]:
        reports = [FeedReport.decode(_b(r)) for r in tree["reports"]]
        signed = sign_root(vector_committee, reports)
        assert signed.root.root == _b(tree["root"])
        # The program computes the same digest (else the pairing over Python's digest would fail).
        meta = chain.ok(verify_ix(chain, signed))
        assert bytes(meta.return_data().data) == _b(tree["root"])
        for case in tree["proofs"]:
            i = case["index"]
            ix = update_feeds_with_proofs_ix(chain.program_id, chain.payer.pubkey(), signed.root.root,
                                             [(i, [_b(h) for h in case["proof"]], reports[i].encode())])
            result = chain.send(ix)
            # Accepted, or (the same feed and round from an earlier tree) not newer: both mean the proof held.
            if not hasattr(result, "return_data"):
                assert custom_error(result) == E.FEED_STALE_ROUND, f"tree {tree['leaf_count']} leaf {i}"
        if tree["leaf_count"] <= 5:  # UpdateFeeds recomputes the same root (the signature verifies)
            chain.send(update_feeds_ix(chain.program_id, chain.payer.pubkey(), signed))
    for case in VECTORS["invalid_proofs"]:
        # Their root (the 5-report tree) was verified above, so only the proof can refuse them.
        assert case["root"] == VECTORS["trees"][4]["root"]
        ix = update_feeds_with_proofs_ix(chain.program_id, chain.payer.pubkey(), _b(case["root"]),
                                         [(case["index"], [_b(h) for h in case["proof"]], _b(case["report"]))])
        chain.fails(E.FEED_NOT_IN_ROOT, ix)


# --- sizes and compute units ------------------------------------------------------------------------


def test_what_fits_in_one_transaction(chain: Chain, vector_committee: Dealt, capsys) -> None:  # noqa: F811
    def reports(n: int) -> list[FeedReport]:
        return [FeedReport(f"SIZE/{i:02d}/" + "X" * 24, 1, -(2**255), 2**256 - 1, 18, 255, 0, 0) for i in range(n)]

    sizes = {}
    for n in (5, 6):
        signed = sign_root(vector_committee, reports(n))
        sizes[f"UpdateFeeds {n}"] = tx_size(chain, update_feeds_ix(chain.program_id, chain.payer.pubkey(), signed))
    big = sign_root(vector_committee, reports(16))
    for n in (3, 4):
        sizes[f"UpdateFeedsWithProofs {n} of 16"] = tx_size(chain, proofs_ix(chain, big, list(range(n))))
    small = sign_root(vector_committee, reports(4))
    sizes["UpdateFeedsWithProofs 4 of 4"] = tx_size(chain, proofs_ix(chain, small, [0, 1, 2, 3]))
    sizes["VerifyFeedRoot"] = tx_size(chain, verify_ix(chain, big))
    with capsys.disabled():
        print("\n" + "\n".join(f"  {k}: {v} bytes" for k, v in sizes.items()))
    assert sizes["UpdateFeeds 5"] <= PACKET < sizes["UpdateFeeds 6"]
    assert sizes["UpdateFeedsWithProofs 3 of 16"] <= PACKET < sizes["UpdateFeedsWithProofs 4 of 16"]
    assert sizes["UpdateFeedsWithProofs 4 of 4"] <= PACKET


def test_compute_units_per_feed(chain: Chain, capsys) -> None:
    lines = []
    for name in ("one feed", "four feeds"):
        signed = signed_root(name)
        meta = chain.ok(update_feeds_ix(chain.program_id, chain.payer.pubkey(), signed))
        n = signed.root.leaf_count
        lines.append(f"UpdateFeeds, {n} new feed(s) in one transaction: {program_units(chain, meta) // n} CU per feed")
    nxt = signed_root("four feeds, next round")
    meta = chain.ok(update_feeds_ix(chain.program_id, chain.payer.pubkey(), nxt))
    lines.append(f"UpdateFeeds, 4 existing feeds: {program_units(chain, meta) // 4} CU per feed")
    for name in ("four feeds", "sixteen feeds"):
        other = make_chain(LiteSVM())
        signed = signed_root(name)
        n = signed.root.leaf_count
        per_tx = 4 if n == 4 else 3
        total = program_units(other, other.ok(verify_ix(other, signed)))
        verify_cu = total
        txs = 1
        for start in range(0, n, per_tx):
            meta = other.ok(proofs_ix(other, signed, list(range(start, min(n, start + per_tx)))))
            total += program_units(other, meta)
            txs += 1
        lines.append(f"VerifyFeedRoot ({verify_cu} CU) + UpdateFeedsWithProofs, {n} new feeds in {txs} transactions: "
                     f"{total // n} CU per feed")
        assert total // n < 40_000
    with capsys.disabled():
        print("\n" + "\n".join("  " + line for line in lines))
