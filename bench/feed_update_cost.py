"""Feed on-chain update cost per feed at 1/4/16 feeds per update (issue 15 item 6), next to the
single-report update, on the real localnet (anvil + the Solana localnet server, `relay localnet`'s
deployment and committee):

    .venv/bin/python bench/feed_update_cost.py [--json out.json]

Every update goes through the pusher's own targets (EvmFeedTarget / SolanaFeedTarget): a v1
report through `push` (EVM FeedStore.updateWithHint; Solana UpdateFeed), k reports of one
committee-signed feed root through `push_root` (EVM one FeedStore.updateFeeds transaction with
every leaf; Solana one UpdateFeeds when the transaction fits 1,232 bytes, else VerifyFeedRoot +
UpdateFeedsWithProofs + CloseFeedRoot, all counted). The committee signature is the localnet's
3-of-4, combined here. Every feed was updated once before (warm-up), so the figures are for
existing feeds (the steady state). Gas: the transactions' gasUsed; CU: computeUnitsConsumed of
every transaction of the update (getTransaction).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from solana.rpc.commitment import Confirmed  # noqa: E402
from solders.signature import Signature  # noqa: E402

import attest  # noqa: E402
from adapters.evm import deploy as evm_deploy  # noqa: E402
from adapters.evm.feeds import EvmFeedTarget  # noqa: E402
from adapters.evm.devnet import ANVIL_DEV_KEYS  # noqa: E402
from eth_account import Account  # noqa: E402
from adapters.solana.feeds import SolanaFeedTarget  # noqa: E402
from attest.committee import Committee  # noqa: E402
from attest.keystore import load_share_for, read_key_file  # noqa: E402
from relay.config import load_config  # noqa: E402
from relay.devstack import messaging_stack  # noqa: E402
from relay.feeds.multi import FeedRoot, SignedFeedRoot  # noqa: E402
from relay.feeds.report import FeedReport, encode_feed_id  # noqa: E402
from relay.feeds.signed import SignedReport  # noqa: E402

SIZES = (1, 4, 16)
FEEDS = [f"B{i:02d}/USD" for i in range(max(SIZES))]


async def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        async with messaging_stack(Path(tmp), attesters=(), relayer=False, feeds=True) as stack:
            config = load_config(stack.config_path)
            committee = Committee.load(config.committee.file)
            secret = read_key_file(config.committee.key_file)
            shares = [load_share_for(committee, config.committee.share_path(i), secret)
                      for i in range(1, committee.t + 1)]

            def combine(digest: bytes) -> bytes:
                return attest.combine_signatures([attest.partial_sign(s, digest) for s in shares])

            def report(feed_id: str, round_: int) -> FeedReport:
                now = int(time.time() * 1000)
                return FeedReport(feed_id, round_, 1000_00000000 + round_ * 1000 + FEEDS.index(feed_id), 5_0000, 8, 3,
                                  now - 500, now)

            def v1(feed_id: str, round_: int) -> SignedReport:
                r = report(feed_id, round_)
                return SignedReport(r, committee.epoch, combine(r.digest(committee.epoch)))

            def served(feed_ids: list[str], round_: int) -> list[SignedReport]:
                root = FeedRoot.of([report(f, round_) for f in feed_ids])
                return SignedFeedRoot(root, committee.epoch, combine(root.digest(committee.epoch))).reports()

            evm_chain = config.chains["evm"]
            evm = EvmFeedTarget.from_config("evm", evm_chain, key=None)
            sol = SolanaFeedTarget.from_config("solana", config.chains["solana"])
            owner = Account.from_key(ANVIL_DEV_KEYS[0])  # the localnet's deployer owns the FeedStore
            store = evm_deploy.contract(evm.w3, "FeedStore", evm.store_address)
            for feed_id in FEEDS:
                await evm_deploy.transact(evm.w3, owner, store.functions.registerFeed(encode_feed_id(feed_id), 8, "bench"))

            async def cu(signatures: list[str]) -> int:
                total = 0
                for sig in signatures:
                    tx = (await sol.rpc.call("getTransaction", lambda c, s=sig: c.get_transaction(
                        Signature.from_string(s), commitment=Confirmed, max_supported_transaction_version=0))).value
                    total += tx.transaction.meta.compute_units_consumed
                return total

            try:
                for feed_id in FEEDS:  # warm-up: every feed exists on both chains
                    s = v1(feed_id, 1)
                    assert isinstance(await evm.push(s), str) and isinstance(await sol.push(s), str)
                out: dict[str, Any] = {}
                # Baseline: one report, one signature over it.
                s = v1(FEEDS[0], 2)
                evm_tx = await evm.push(s)
                sol_tx = await sol.push(s)
                assert isinstance(evm_tx, str) and isinstance(sol_tx, str)
                out["single"] = {"gas": int(evm.last_receipt["gasUsed"]), "cu": await cu([sol_tx]), "sol_txs": 1}
                for n, k in enumerate(SIZES):
                    reports = served(FEEDS[:k], 10 + n)
                    evm_result = await evm.push_root(reports)
                    assert all(isinstance(v, str) for v in evm_result.values()) and len(set(evm_result.values())) == 1
                    gas = int(evm.last_receipt["gasUsed"])
                    sol_result = await sol.push_root(reports)
                    assert all(isinstance(v, str) for v in sol_result.values()), sol_result
                    kinds = [kind for kind, _ in sol.last_signatures]
                    units = await cu([sig for _, sig in sol.last_signatures])
                    out[f"root_{k}"] = {"feeds": k, "gas": gas, "gas_per_feed": round(gas / k), "cu": units,
                                        "cu_per_feed": round(units / k), "sol_txs": len(kinds),
                                        "sol_instructions": kinds}
                # One feed due of a 4-feed root: its proof alone, or the other three riding along.
                reports = served(FEEDS[:4], 20)
                assert isinstance((await sol.push_root(reports[:1]))[FEEDS[0]], str)
                out["solana_one_of_4_proof"] = {"cu": await cu([sig for _, sig in sol.last_signatures]),
                                                "sol_txs": len(sol.last_signatures)}
                reports = served(FEEDS[:4], 21)
                result = await sol.push_root(reports[:1], riders=reports[1:])
                assert set(result) == set(FEEDS[:4]) and all(isinstance(v, str) for v in result.values()), result
                out["solana_one_of_4_riders"] = {"cu": await cu([sig for _, sig in sol.last_signatures]),
                                                 "sol_txs": len(sol.last_signatures)}
                return out
            finally:
                await evm.close()
                await sol.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    out = asyncio.run(run())
    single = out["single"]
    print(f"{'update':<34} {'EVM gas':>9} {'gas/feed':>9} {'Solana CU':>10} {'CU/feed':>8} {'Solana txs':>10}")
    print(f"{'1 report, v1 (updateWithHint/UpdateFeed)':<34} {single['gas']:>9} {single['gas']:>9} "
          f"{single['cu']:>10} {single['cu']:>8} {1:>10}")
    for k in SIZES:
        row = out[f"root_{k}"]
        print(f"{f'{k} feeds, one root signature':<34} {row['gas']:>9} {row['gas_per_feed']:>9} {row['cu']:>10} "
              f"{row['cu_per_feed']:>8} {row['sol_txs']:>10}  ({' + '.join(row['sol_instructions'])})")
    for key, what in (("solana_one_of_4_proof", "1 due of a 4-feed root, with proof"),
                      ("solana_one_of_4_riders", "1 due + 3 riding along (UpdateFeeds)")):
        row = out[key]
        print(f"{what:<34} {'':>9} {'':>9} {row['cu']:>10} {'':>8} {row['sol_txs']:>10}  (Solana only)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
