"""What the targets send for served (v2) reports of one feed root, without a node: the EVM
updateFeeds arguments (every leaf without proofs, a subset with them) and the Solana plan (one
UpdateFeeds when it fits 1,232 bytes, else VerifyFeedRoot + UpdateFeedsWithProofs packed to the
packet limit + CloseFeedRoot). The chains run them in tests/e2e/test_feed_push_flow.py and
bench/feed_update_cost.py."""

from __future__ import annotations

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from adapters.evm.feeds import served_update_args
from adapters.solana.feeds import FeedPushError, SolanaFeedTarget
from adapters.solana.tx import PACKET_DATA_SIZE
from relay.feeds.multi import FeedRoot, SignedFeedRoot
from relay.feeds.report import FeedError, FeedReport

T0 = 1_795_431_720_000


def served(n: int, round_: int = 3, signature: bytes = b"\x07" * 64):
    reports = [FeedReport(f"F{i:02d}/USD", round_, 10**8 + i, 5, 8, 3, T0, T0 + 300) for i in range(n)]
    return SignedFeedRoot(FeedRoot.of(reports), 1, signature).reports()


def test_evm_all_leaves_go_without_proofs_a_subset_with_them() -> None:
    reports = served(4)
    sig, raw, indices, proofs = served_update_args(list(reversed(reports)), hinted=False)
    assert sig[0] == reports[0].root_hash and sig[1] == 4 and sig[2] == 1 and sig[4:] == (0, 0, 0)
    assert raw == [r.report.encode() for r in reports] and indices == [] and proofs == []
    sig, raw, indices, proofs = served_update_args([reports[3], reports[1]], hinted=False)
    assert indices == [1, 3] and raw == [reports[1].report.encode(), reports[3].report.encode()]
    assert proofs == [list(reports[1].root.proof), list(reports[3].root.proof)]
    with pytest.raises(FeedError, match="one feed root"):
        served_update_args([reports[0], served(4, round_=4)[1]])
    with pytest.raises(FeedError, match="one feed root"):
        served_update_args([])


@pytest.fixture
def target():
    return SolanaFeedTarget(["http://127.0.0.1:1"], Keypair(), Pubkey.new_unique())  # never connects here


@pytest.mark.parametrize("n, kinds", [
    (1, ["UpdateFeeds"]),
    (4, ["UpdateFeeds"]),
    (5, ["UpdateFeeds"]),
    (6, ["VerifyFeedRoot", "UpdateFeedsWithProofs", "UpdateFeedsWithProofs", "CloseFeedRoot"]),
    (16, ["VerifyFeedRoot"] + ["UpdateFeedsWithProofs"] * 6 + ["CloseFeedRoot"]),
])
def test_solana_plan_fits_every_transaction_in_a_packet(target, n: int, kinds: list[str]) -> None:
    reports = served(n)
    plan = target.root_plan(reports)
    assert [kind for kind, _, _ in plan] == kinds
    for _, ixs, cu_limit in plan:
        assert target._tx_size(ixs, cu_limit) <= PACKET_DATA_SIZE
    carried = [ix for kind, ixs, _ in plan if kind.startswith("UpdateFeeds") for ix in ixs]
    feeds = {meta.pubkey for ix in carried for meta in ix.accounts[3:]}
    assert feeds == {target.address(r.feed_id) for r in reports}  # every feed exactly in the plan


def test_solana_a_subset_of_a_root_goes_with_proofs(target) -> None:
    reports = served(4)
    plan = target.root_plan([reports[2]])
    assert [kind for kind, _, _ in plan] == ["VerifyFeedRoot", "UpdateFeedsWithProofs", "CloseFeedRoot"]
    with pytest.raises(FeedPushError, match="one feed root"):
        target.root_plan([reports[0], served(4, round_=9)[0]])
