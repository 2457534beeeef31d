"""On-chain gas of EVM feed updates on anvil (whole transactions, as mined).

    .venv/bin/python bench/feeds_onchain.py [--rounds 16] [--json out.json]

Two FeedStores behind one CommitteeVerifier receive the same committee-signed reports (3-of-4,
dealt here): one through `update` (the store hashes the digest to G1 itself, one modexp per
try-and-increment step), the other through `updateWithHint` (attest.bn254.hash_to_g1_hint; what
EvmFeedTarget sends). The first update of a feed writes fresh slots for the feed state; later ones
write a new round's two slots and rewrite the feed's. Also measured: the pull path
(PullConsumer.settle submitting the report, then again when the round is already stored),
`tryUpdate` of a report that is not newer, reading `latestRoundData` through the aggregator, and
the deployments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from web3 import AsyncHTTPProvider, AsyncWeb3  # noqa: E402

import attest  # noqa: E402
from adapters.evm import deploy as evm_deploy  # noqa: E402
from adapters.evm.devnet import running_anvil  # noqa: E402
from attest.bn254 import hash_to_g1_hint  # noqa: E402
from adapters.evm.feeds import aggregator_key, deploy_feeds  # noqa: E402
from relay.feeds.config import FeedConfig  # noqa: E402
from relay.feeds.report import FeedReport, encode_feed_id  # noqa: E402
from relay.feeds.signed import SignedReport  # noqa: E402

DOMAIN = 31337
EPOCH = 1
T0_MS = 1_795_431_720_000


def _feeds() -> dict[str, FeedConfig]:
    return {"ETH/USD": FeedConfig(id="ETH/USD", description="bench", decimals=8,
                                  sources=[{"kind": "file", "path": "unused.csv"}])}


def _summary(values: list[int]) -> dict[str, float]:
    return {"mean": round(statistics.mean(values)), "min": min(values), "max": max(values), "n": len(values)}


async def run(rounds: int) -> dict[str, Any]:
    evm_deploy.ensure_built()
    committee, shares = attest.deal(4, 3, epoch=EPOCH)

    def sign(report: FeedReport) -> SignedReport:
        digest = report.digest(EPOCH)
        return SignedReport(report, EPOCH, attest.combine_signatures([attest.partial_sign(s, digest) for s in shares[:3]]))

    async with running_anvil() as node:
        w3 = AsyncWeb3(AsyncHTTPProvider(node.rpc_url))
        try:
            key, pusher = node.private_keys[0], node.private_keys[2]
            verifier = await evm_deploy.deploy(w3, key, "CommitteeVerifier", DOMAIN, EPOCH, committee.n, committee.t,
                                               committee.group_key)
            plain_contracts = await deploy_feeds(w3, key, verifier, _feeds())
            hinted_contracts = await deploy_feeds(w3, key, verifier, _feeds())
            plain = evm_deploy.contract(w3, "FeedStore", plain_contracts["FeedStore"])
            hinted = evm_deploy.contract(w3, "FeedStore", hinted_contracts["FeedStore"])

            deploy_gas = {}
            for name, address in (("FeedStore", plain_contracts["FeedStore"]),
                                  ("TesseraAggregator", plain_contracts[aggregator_key("ETH/USD")])):
                found = False
                for number in range(1, await w3.eth.block_number + 1):
                    block = await w3.eth.get_block(number)
                    for h in block["transactions"]:
                        receipt = await w3.eth.get_transaction_receipt(h)
                        if receipt["contractAddress"] == address:
                            found = True
                            deploy_gas[name] = receipt["gasUsed"]
                assert found, f"no deployment of {name} found"

            plain_gas: list[int] = []
            hinted_gas: list[int] = []
            ks: list[int] = []
            for r in range(1, rounds + 1):
                report = FeedReport("ETH/USD", r, 345_000_000_000 + r * 1_000_000, 500_000, 8, 4,
                                    T0_MS + r * 1000, T0_MS + r * 1000 + 300)
                signed = sign(report)
                k, y, y_sqrt = hash_to_g1_hint(signed.digest)
                ks.append(k)
                args = (report.encode(), EPOCH, signed.signature)
                plain_gas.append((await evm_deploy.transact(w3, pusher, plain.functions.update(*args)))["gasUsed"])
                hinted_gas.append((await evm_deploy.transact(
                    w3, pusher, hinted.functions.updateWithHint(*args, k, y, y_sqrt)))["gasUsed"])

            last = sign(FeedReport("ETH/USD", rounds, 345_000_000_000 + rounds * 1_000_000, 500_000, 8, 4,
                                   T0_MS + rounds * 1000, T0_MS + rounds * 1000 + 300))
            stale_try = (await evm_deploy.transact(w3, pusher, hinted.functions.tryUpdate(
                last.report.encode(), EPOCH, last.signature)))["gasUsed"]

            consumer_address = await evm_deploy.deploy(w3, key, "PullConsumer", hinted_contracts["FeedStore"],
                                                       encode_feed_id("ETH/USD"), 2**40)
            consumer = evm_deploy.contract(w3, "PullConsumer", consumer_address)
            nxt = sign(FeedReport("ETH/USD", rounds + 1, 346_000_000_000, 500_000, 8, 4,
                                  T0_MS + (rounds + 1) * 1000, T0_MS + (rounds + 1) * 1000 + 300))
            settle_args = (nxt.report.encode(), EPOCH, nxt.signature, *hash_to_g1_hint(nxt.digest))
            settle_new = (await evm_deploy.transact(w3, pusher, consumer.functions.settle(*settle_args)))["gasUsed"]
            settle_stored = (await evm_deploy.transact(w3, pusher, consumer.functions.settle(*settle_args)))["gasUsed"]

            aggregator = evm_deploy.contract(w3, "TesseraAggregator", hinted_contracts[aggregator_key("ETH/USD")])
            read_gas = await w3.eth.estimate_gas({"to": aggregator.address,
                                                  "data": aggregator.functions.latestRoundData()._encode_transaction_data()})
        finally:
            await w3.provider.disconnect()
    return {
        "rounds": rounds,
        "k_distribution": {str(k): ks.count(k) for k in sorted(set(ks))},
        "update_first": plain_gas[0],
        "update_next": _summary(plain_gas[1:]),
        "update_with_hint_first": hinted_gas[0],
        "update_with_hint_next": _summary(hinted_gas[1:]),
        "try_update_not_newer": stale_try,
        "pull_settle_submitting": settle_new,
        "pull_settle_already_stored": settle_stored,
        "aggregator_latest_round_data_call": read_gas,
        "deploy": deploy_gas,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = asyncio.run(run(args.rounds))
    rows = [
        ("update (first round of a feed)", result["update_first"]),
        ("update (later rounds, mean)", result["update_next"]["mean"]),
        ("updateWithHint (first round of a feed)", result["update_with_hint_first"]),
        ("updateWithHint (later rounds, mean)", result["update_with_hint_next"]["mean"]),
        ("tryUpdate, report not newer", result["try_update_not_newer"]),
        ("PullConsumer.settle, submitting the report", result["pull_settle_submitting"]),
        ("PullConsumer.settle, round already stored", result["pull_settle_already_stored"]),
        ("aggregator latestRoundData (eth_call incl. 21k base)", result["aggregator_latest_round_data_call"]),
        ("deploy FeedStore", result["deploy"]["FeedStore"]),
        ("deploy TesseraAggregator", result["deploy"]["TesseraAggregator"]),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"EVM feed gas on anvil, {result['rounds']} rounds, k distribution {result['k_distribution']}")
    for name, gas in rows:
        print(f"  {name:<{width}}  {gas:>9,} gas")
    for key in ("update_next", "update_with_hint_next"):
        s = result[key]
        print(f"  {key}: min {s['min']:,} max {s['max']:,} over {s['n']} rounds")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
