"""Rent per delivered message on Solana, before and after the relayer closes receipts (issue 15:
"net lamports locked per delivered message after closes <= 1 % of today's").

Runs the Solana localnet server in process (so its clock can be moved past the program's 86,400 s
receipt retention, as tests/e2e/test_receipt_closing.py does), deploys the program, and a relayer
(in process: relay.pipeline.Relayer with its store and the Solana adapter, batching on, committee
signatures from locally dealt shares instead of attester processes) delivers N messages from an
EVM-like source domain to receivers nobody holds. Then:

- "today" (receipts never closed): lamports held by the delivery receipts + any open root accounts,
  per delivered message;
- the chain's clock is moved past the retention; the relayer's receipt loop (run with
  close_receipts_after 0 here, since only the chain's clock moves: the program refuses its closes as
  too early until then) closes every receipt it paid for (CloseReceipt, packed several per
  transaction) and its roots are closed as before;
- "after closes": lamports still held by what the deliveries and closes created (replay bitmaps,
  ["replay", src_domain, nonce >> 13], one per 8,192 nonces of a source; receipts and roots left
  open), per delivered message; and the bitmap amortised over a full window (8,192 messages).

    .venv/bin/python bench/rent.py [--messages 100] [--payload-bytes 32]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from solana.rpc.async_api import AsyncClient  # noqa: E402
from solana.rpc.commitment import Confirmed  # noqa: E402
from solders.keypair import Keypair  # noqa: E402

import adapters.solana_localnet.ledger as localnet_ledger  # noqa: E402
from adapters.solana.deploy import deploy_program, initialize_committee, initialize_gateway  # noqa: E402
from adapters.solana.gateway import SolanaAdapter  # noqa: E402
from adapters.solana.program import (RECEIPT_RETENTION_SECONDS, REPLAY_WINDOW_BITS, receipt_address,  # noqa: E402
                                     replay_address, root_address)
from adapters.solana_localnet.testing import running_solana_localnet_in_process  # noqa: E402
from attest import combine, deal, partial_sign  # noqa: E402
from relay.config import SolanaChain  # noqa: E402
from relay.envelope import Envelope  # noqa: E402
from relay.log import configure_logging  # noqa: E402
from relay.pipeline import Collected, PipelineSettings, Relayer  # noqa: E402
from relay.protocol import MessageKind  # noqa: E402
from relay.store import ReceiptState, Stage, Store  # noqa: E402
from tests.support.fakes import FakeChain  # noqa: E402

DOMAIN, EVM, EPOCH = 921, 31337, 1


class _Clock:
    def __init__(self) -> None:
        self.offset = 0

    def time(self) -> float:
        return time.time() + self.offset


class _Committee:
    def __init__(self, committee, shares) -> None:
        self.committee, self.shares = committee, shares

    def _sign(self, digest: bytes) -> Collected:
        result = combine(self.committee, digest, [partial_sign(s, digest) for s in self.shares[:3]])
        assert result.ok, result.reason
        return Collected(result.signature, EPOCH)

    async def collect(self, envelope, source_tx):
        return self._sign(envelope.digest(EPOCH))

    async def collect_root(self, batch, source_txs):
        return self._sign(batch.digest(EPOCH))


async def _until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def _lamports(client: AsyncClient, addresses) -> int:
    total = 0
    addresses = list(addresses)
    for i in range(0, len(addresses), 100):
        for account in (await client.get_multiple_accounts(addresses[i:i + 100], Confirmed)).value:
            total += account.lamports if account is not None else 0
    return total


async def run(messages: int, payload_bytes: int) -> None:
    clock = _Clock()
    localnet_ledger.time = SimpleNamespace(time=clock.time)  # type: ignore[assignment]
    async with running_solana_localnet_in_process(slot_ms=30, finality_slots=8) as server:
        async with AsyncClient(server.rpc_url, commitment=Confirmed) as client:
            async def funded(lamports: int) -> Keypair:
                key = Keypair()
                sig = (await client.request_airdrop(key.pubkey(), lamports)).value
                await client.confirm_transaction(sig, Confirmed, sleep_seconds=0.05)
                return key

            committee, shares = deal(4, 3, epoch=EPOCH)
            admin = await funded(100 * 10**9)
            program_id = await asyncio.wait_for(deploy_program(client, admin), 120)
            await initialize_committee(client, admin, program_id, domain=DOMAIN, epoch=EPOCH, n=4, t=3,
                                       group_key=committee.group_key)
            await initialize_gateway(client, admin, program_id)
            relayer_key = await funded(100 * 10**9)
            chain = SolanaChain(kind="solana", domain=DOMAIN, rpc_urls=[server.rpc_url], ws_urls=[server.ws_url],
                                program_id=str(program_id))
            adapter = SolanaAdapter("solana", chain, relayer_key, poll_interval=0.2, idle_poll_interval=2.0)
            with tempfile.TemporaryDirectory(prefix="rent-bench-") as tmp:
                store = await Store.open(Path(tmp) / "relayer.db")
                settings = PipelineSettings(batch_size=32, batch_wait=0.05, confirm_poll=0.05, batch_close_interval=0.2,
                                            close_receipts_after=0, receipt_close_interval=0.5,
                                            receipt_scan_margin=0, receipt_too_early_retry=0.5)
                relayer = Relayer(store, {EVM: FakeChain("evm", EVM), DOMAIN: adapter}, _Committee(committee, shares),
                                  settings)
                stop = asyncio.Event()
                running = asyncio.create_task(relayer.run(stop))
                try:
                    envelopes = [Envelope(MessageKind.DATA, n, EVM, b"\x00" * 12 + b"\x5e" * 20, DOMAIN,
                                          bytes(Keypair().pubkey()), (b"rent bench %d " % n).ljust(payload_bytes, b"."))
                                 for n in range(messages)]
                    start_balance = (await client.get_balance(relayer_key.pubkey(), Confirmed)).value
                    t0 = time.monotonic()
                    for e in envelopes:
                        await relayer.observe(e, f"0xsource{e.nonce}")

                    async def recorded() -> bool:
                        counts = await store.receipt_counts()
                        return sum(n for n, _ in counts.values()) == messages

                    async def roots_closed() -> bool:
                        rows = await store._db.fetch("SELECT closed_at FROM batches")
                        return all(r["closed_at"] is not None for r in rows)
                    await _until(recorded, 300, "every message delivered and its receipt recorded")
                    await _until(roots_closed, 60, "the roots closed")
                    delivered_in = time.monotonic() - t0
                    stages = [(await store.get(e.message_id)).stage for e in envelopes]  # type: ignore[union-attr]
                    assert stages == [Stage.CONFIRMED] * messages, stages
                    roots = [bytes(r["root"]) for r in await store._db.fetch("SELECT root FROM batches")]
                    receipts = [receipt_address(program_id, e.message_id)[0] for e in envelopes]
                    windows = sorted({e.nonce >> REPLAY_WINDOW_BITS for e in envelopes})
                    bitmaps = [replay_address(program_id, EVM, w << REPLAY_WINDOW_BITS) for w in windows]
                    roots_rent = await _lamports(client, [root_address(program_id, r) for r in roots])
                    receipts_rent = await _lamports(client, receipts)
                    today = receipts_rent + roots_rent + await _lamports(client, bitmaps)
                    mid_balance = (await client.get_balance(relayer_key.pubkey(), Confirmed)).value

                    clock.offset = RECEIPT_RETENTION_SECONDS + 5  # past the retention on the chain's clock

                    async def all_closed() -> bool:
                        counts = await store.receipt_counts()
                        return counts.get(ReceiptState.CLOSED, (0, 0))[0] == messages
                    t1 = time.monotonic()
                    await _until(all_closed, 300, "every receipt closed by the relayer")
                    closed_in = time.monotonic() - t1
                    close_txs = await store._db.fetchval("SELECT count(DISTINCT close_tx) FROM receipts")
                    after_receipts = await _lamports(client, receipts)
                    after_roots = await _lamports(client, [root_address(program_id, r) for r in roots])
                    bitmaps_rent = await _lamports(client, bitmaps)
                    after = after_receipts + after_roots + bitmaps_rent
                    end_balance = (await client.get_balance(relayer_key.pubkey(), Confirmed)).value
                finally:
                    stop.set()
                    await asyncio.wait_for(running, 30)
                    await store.close()
                    await adapter.close()

    per_today, per_after = today / messages, after / messages
    per_window = bitmaps_rent / len(bitmaps) / (1 << REPLAY_WINDOW_BITS)
    print(f"{messages} messages EVM -> Solana ({payload_bytes}-byte payloads) delivered through the relayer in "
          f"{delivered_in:.1f} s ({len(roots)} roots), receipts closed by it in {closed_in:.1f} s "
          f"({close_txs} CloseReceipt transactions)")
    print(f"{'lamports locked per delivered message':<48} {'before closes (today)':>22} {'after closes':>14} {'ratio':>8}")
    print(f"{'measured over these messages':<48} {per_today:>22,.0f} {per_after:>14,.0f} {per_after / per_today:>8.2%}")
    print(f"{'bitmap amortised over a full window (8,192)':<48} {per_today:>22,.0f} {per_window:>14,.0f} "
          f"{per_window / per_today:>8.3%}")
    print(f"  before: receipts {receipts_rent:,} + open roots {roots_rent:,}; after: receipts {after_receipts:,} + "
          f"roots {after_roots:,} + {len(bitmaps)} replay bitmap(s) {bitmaps_rent:,}")
    print(f"  relayer balance: -{start_balance - mid_balance:,} after delivering (fees + rent), "
          f"+{end_balance - mid_balance:,} back from the closes (rent less {close_txs} fees and the bitmap it paid); "
          f"net -{start_balance - end_balance:,} = {(start_balance - end_balance) / messages:,.0f} per message")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--payload-bytes", type=int, default=32)
    args = parser.parse_args()
    configure_logging("warning")
    asyncio.run(run(args.messages, args.payload_bytes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
