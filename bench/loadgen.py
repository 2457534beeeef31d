"""A load generator for bench/e2e.py that is not itself the cap: the burst's source transactions are
built and signed before the clock starts, then submitted as fast as the source chain accepts them.

- EVM: Gateway.send calls with the quoted fee as value (the quote read once), from several fresh
  accounts funded with anvil_setBalance (each with its own sequential nonces), signed locally with
  eth_account, raw-sent in JSON-RPC batches (a few in flight) without waiting for receipts. Inclusion
  is followed block by block (eth_blockNumber, then each new block's transaction hashes); the
  message ids come from one pass of receipts afterwards, their MessageSent logs parsed by the EVM
  adapter's own `_observation` (the relayer's checks).
- Solana: the program's Send (or SendPaid when the gateway charges; as SolanaAdapter.send_message)
  with the SDK's compute-unit limit, from several payers funded by airdrop, signed with a recent
  blockhash (valid 150 slots: the rest are signed again with a fresh one once it is 8 s old), sent
  via sendTransaction in JSON-RPC batches without waiting; statuses polled via getSignatureStatuses;
  the message ids from each transaction's logs (adapters/solana/program.py sent_envelopes_of).

Paced (`submit_paced`, bench/e2e.py's sustained mode): the same pre-signed transactions submitted on
a monotonic schedule instead of at once: every 0.1 s tick the next rate/10 that are due (a late tick
catches up with what is due by then, nothing is sent ahead of the schedule), each transaction's
submission time recorded. Solana transactions are signed again, a chunk at a time, when the
blockhash of the ones due is older than SOLANA_RESIGN_AFTER_S - 1 s, so none goes out with an older
one. `paced_stats` / `sustained_verdict` turn the submission and confirmation times into the offered
and delivered rates, the latency per half of the run, the backlog per second and a verdict.

Every transaction that fails or never lands is an error, said with its id: a burst is only
measured whole.
"""

from __future__ import annotations

import asyncio
import base64
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from relay.envelope import Envelope
from relay.protocol import MessageKind

RPC_BATCH = 50  # JSON-RPC requests per HTTP request (the Solana localnet takes at most 100)
IN_FLIGHT = 4  # HTTP requests in flight at once while submitting
SOLANA_RESIGN_AFTER_S = 8.0  # a blockhash is valid 150 slots = 15 s at 100 ms slots
TICK_S = 0.1  # the paced schedule's step


class LoadError(RuntimeError):
    pass


class Rpc:
    """Raw JSON-RPC over one aiohttp session (client-library overhead left out)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        self._id = 0

    async def close(self) -> None:
        await self.session.close()

    async def call(self, method: str, params: list[Any] | None = None) -> Any:
        return (await self.batch([(method, params or [])]))[0]

    async def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """The results in order; LoadError naming the first call that failed."""
        body = []
        for method, params in calls:
            self._id += 1
            body.append({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params})
        async with self.session.post(self.url, json=body) as resp:
            reply = await resp.json(content_type=None)
        if isinstance(reply, dict):  # the whole batch refused
            raise LoadError(f"{self.url}: batch of {len(calls)} refused: {reply.get('error', reply)}")
        by_id = {r.get("id"): r for r in reply}
        out = []
        for request, (method, _) in zip(body, calls):
            r = by_id.get(request["id"])
            if r is None:
                raise LoadError(f"{self.url}: no answer to {method} in a batch")
            if "error" in r:
                raise LoadError(f"{self.url}: {method} failed: {r['error']}")
            out.append(r["result"])
        return out


async def _gather_limited(coros: list, limit: int) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def one(coro):
        async with sem:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


@dataclass
class Burst:
    """One burst of source transactions: ids in submission order, when they went out and landed."""
    chain: str
    tx_ids: list[str]
    started: float = 0.0  # time.time() of the first submission
    all_submitted: float = 0.0
    included_at: dict[str, float] = field(default_factory=dict)  # tx id -> when first seen included
    positions: dict[str, int] = field(default_factory=dict)  # tx id -> block number / slot it landed in
    submitted_at: dict[str, float] = field(default_factory=dict)  # tx id -> when its request went out (paced)

    @property
    def last_included(self) -> float:
        return max(self.included_at.values())

    def inclusion_rate(self) -> float:
        """Transactions per second from the first submission to the last inclusion."""
        return len(self.tx_ids) / max(self.last_included - self.started, 1e-9)


class EvmLoad:
    """Gateway.send bursts on an EVM chain (anvil: accounts funded with anvil_setBalance)."""

    def __init__(self, name: str, chain: Any, adapter: Any, accounts: int = 4) -> None:
        from eth_account import Account

        self.name, self.chain, self.adapter = name, chain, adapter  # adapter: the SDK's read-only EvmAdapter
        self.rpc = Rpc(chain.rpc_urls[0])
        self.accounts = [Account.create() for _ in range(accounts)]  # fresh: no other process sends from them
        self.nonces: dict[str, int] = {}
        self._gas: dict[tuple[int, int], int] = {}
        self._head_before = 0

    async def setup(self) -> None:
        await self.rpc.batch([("anvil_setBalance", [a.address, hex(10**24)]) for a in self.accounts])
        counts = await self.rpc.batch([("eth_getTransactionCount", [a.address, "pending"]) for a in self.accounts])
        self.nonces = {a.address: int(c, 16) for a, c in zip(self.accounts, counts)}

    async def close(self) -> None:
        await self.rpc.close()

    async def prepare(self, dst_domain: int, receivers: list[bytes], payloads: list[bytes]) -> list[tuple[str, str]]:
        """(tx hash, raw hex) per message, signed, round-robin over the accounts; nothing sent yet."""
        from eth_utils import to_hex

        lengths = {len(p) for p in payloads}
        quotes = {n: await self.adapter.quote(dst_domain, n) for n in lengths}  # read once per length
        gateway = self.adapter.gateway_address
        contract = self.adapter._gateway
        datas = [contract.functions.send(dst_domain, bytes(r), int(MessageKind.DATA), bytes(p))._encode_transaction_data()
                 for r, p in zip(receivers, payloads)]
        key = (dst_domain, max(lengths))
        if key not in self._gas:
            estimate = await self.rpc.call("eth_estimateGas", [{
                "from": self.accounts[0].address, "to": gateway, "data": datas[payloads.index(max(payloads, key=len))],
                "value": hex(quotes[max(lengths)])}])
            self._gas[key] = int(int(estimate, 16) * 1.3) + 20_000  # a margin: the first send of an account costs more
        tip = int(await self.rpc.call("eth_maxPriorityFeePerGas"), 16)
        block = await self.rpc.call("eth_getBlockByNumber", ["latest", False])
        max_fee = 4 * int(block.get("baseFeePerGas", "0x0"), 16) + tip + 10**9  # room for a rising base fee
        out = []
        for i, (data, payload) in enumerate(zip(datas, payloads)):
            account = self.accounts[i % len(self.accounts)]
            nonce = self.nonces[account.address]
            self.nonces[account.address] = nonce + 1
            tx = {"to": gateway, "data": data, "value": quotes[len(payload)], "gas": self._gas[key], "nonce": nonce,
                  "chainId": self.chain.chain_id, "maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip, "type": 2}
            signed = account.sign_transaction(tx)
            out.append((to_hex(signed.hash), to_hex(signed.raw_transaction)))
        return out

    async def submit(self, prepared: list[tuple[str, str]]) -> Burst:
        burst = Burst(self.name, [h for h, _ in prepared])
        chunks = [prepared[i:i + RPC_BATCH] for i in range(0, len(prepared), RPC_BATCH)]
        self._head_before = int(await self.rpc.call("eth_blockNumber"), 16)
        burst.started = time.time()
        results = await _gather_limited([self.rpc.batch([("eth_sendRawTransaction", [raw]) for _, raw in chunk])
                                         for chunk in chunks], IN_FLIGHT)
        burst.all_submitted = time.time()
        for chunk, hashes in zip(chunks, results):
            for (want, _), got in zip(chunk, hashes):
                if got.lower() != want.lower():
                    raise LoadError(f"{self.name}: node returned hash {got} for transaction {want}")
        return burst

    async def _start(self) -> None:
        self._head_before = int(await self.rpc.call("eth_blockNumber"), 16)

    async def _due(self, prepared: list[tuple[str, str]], start: int, stop: int, rate: float) -> list[tuple[str, str]]:
        return prepared[start:stop]  # EVM transactions do not expire

    async def _send(self, chunk: list[tuple[str, str]]) -> None:
        hashes = await self.rpc.batch([("eth_sendRawTransaction", [raw]) for _, raw in chunk])
        for (want, _), got in zip(chunk, hashes):
            if got.lower() != want.lower():
                raise LoadError(f"{self.name}: node returned hash {got} for transaction {want}")

    async def wait_included(self, burst: Burst, timeout: float = 300, poll: float = 0.05) -> None:
        """Follows new blocks and marks each of the burst's transactions when its block is seen."""
        pending = {h.lower() for h in burst.tx_ids}
        next_block = self._head_before + 1  # from the first block mined after the submissions began
        deadline = time.monotonic() + timeout
        while pending:
            head = int(await self.rpc.call("eth_blockNumber"), 16)
            if head >= next_block:
                blocks = await self.rpc.batch([("eth_getBlockByNumber", [hex(n), False])
                                               for n in range(next_block, head + 1)])
                now = time.time()
                for block in blocks:
                    for h in block["transactions"]:
                        if h.lower() in pending:
                            pending.discard(h.lower())
                            burst.included_at[h] = now
                            burst.positions[h] = int(block["number"], 16)
                next_block = head + 1
            if not pending:
                break
            if time.monotonic() > deadline:
                raise LoadError(f"{self.name}: {len(pending)} of {len(burst.tx_ids)} transactions not included after "
                                f"{timeout:.0f}s, e.g. {next(iter(pending))}")
            await asyncio.sleep(poll)
        # Key the times by the ids as submitted (nodes may differ in hex case).
        lowered = {h.lower(): t for h, t in burst.included_at.items()}
        at = {h.lower(): n for h, n in burst.positions.items()}
        burst.included_at = {h: lowered[h.lower()] for h in burst.tx_ids}
        burst.positions = {h: at[h.lower()] for h in burst.tx_ids}

    async def message_ids(self, burst: Burst) -> list[bytes]:
        """One pass of receipts: every transaction succeeded and emitted exactly one valid MessageSent."""
        from hexbytes import HexBytes

        ids = []
        for i in range(0, len(burst.tx_ids), RPC_BATCH):
            hashes = burst.tx_ids[i:i + RPC_BATCH]
            receipts = await self.rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
            for h, receipt in zip(hashes, receipts):
                if receipt is None or int(receipt["status"], 16) != 1:
                    raise LoadError(f"{self.name}: Gateway.send {h} {'has no receipt' if receipt is None else 'reverted'}")
                found = []
                for entry in receipt["logs"]:
                    if entry["topics"] and entry["topics"][0].lower() == self.adapter._topic_sent.lower():
                        observation = self.adapter._observation({
                            "topics": [HexBytes(t) for t in entry["topics"]], "data": HexBytes(entry["data"]),
                            "transactionHash": HexBytes(h), "blockNumber": int(entry["blockNumber"], 16),
                            "logIndex": int(entry["logIndex"], 16)}, "0")
                        if observation is not None:
                            found.append(observation.envelope.message_id)
                if len(found) != 1:
                    raise LoadError(f"{self.name}: Gateway.send {h} emitted {len(found)} valid MessageSent, expected 1")
                ids.extend(found)
        return ids


class SolanaLoad:
    """Program Send bursts on the Solana localnet (payers funded by airdrop)."""

    def __init__(self, name: str, chain: Any, adapter: Any, payers: int = 4) -> None:
        from solders.keypair import Keypair
        from solders.pubkey import Pubkey

        self.name, self.chain, self.adapter = name, chain, adapter  # adapter: the SDK's read-only SolanaAdapter
        self.rpc = Rpc(chain.rpc_urls[0])
        self.program_id = Pubkey.from_string(chain.program_id)
        self.payers = [Keypair() for _ in range(payers)]

    async def setup(self) -> None:
        sigs = await self.rpc.batch([("requestAirdrop", [str(p.pubkey()), 100 * 10**9]) for p in self.payers])
        burst = Burst(self.name, list(sigs), started=time.time())
        await self.wait_included(burst, timeout=30)

    async def close(self) -> None:
        await self.rpc.close()

    def _instructions(self, dst_domain: int, receivers: list[bytes], payloads: list[bytes],
                      paid: dict[int, tuple[int, Any, Any] | None]) -> list[list[Any]]:
        from solders.compute_budget import set_compute_unit_limit

        from adapters.solana.fee_program import send_paid_ix
        from adapters.solana.gateway import SEND_CU_LIMIT
        from adapters.solana.program import send_ix

        out = []
        for i, (receiver, payload) in enumerate(zip(receivers, payloads)):
            payer = self.payers[i % len(self.payers)].pubkey()
            fee = paid[len(payload)]
            if fee is None:
                ix = send_ix(self.program_id, payer, dst_domain=dst_domain, receiver=receiver,
                             kind=int(MessageKind.DATA), payload=payload)
            else:
                ix = send_paid_ix(self.program_id, payer, dst_domain=dst_domain, receiver=receiver,
                                  kind=int(MessageKind.DATA), payload=payload, max_fee=fee[0], dst_feed=fee[1],
                                  sol_feed=fee[2])
            out.append([set_compute_unit_limit(SEND_CU_LIMIT), ix])
        return out

    async def _blockhash(self) -> Any:
        from solders.hash import Hash

        got = await self.rpc.call("getLatestBlockhash", [{"commitment": "confirmed"}])
        return Hash.from_string(got["value"]["blockhash"])

    def _sign(self, instructions: list[list[Any]], offset: int, blockhash: Any) -> list[tuple[str, str]]:
        from solders.message import Message
        from solders.transaction import VersionedTransaction

        out = []
        for j, ixs in enumerate(instructions):
            payer = self.payers[(offset + j) % len(self.payers)]
            tx = VersionedTransaction(Message.new_with_blockhash(ixs, payer.pubkey(), blockhash), [payer])
            out.append((str(tx.signatures[0]), base64.b64encode(bytes(tx)).decode()))
        return out

    async def prepare(self, dst_domain: int, receivers: list[bytes], payloads: list[bytes]) -> "SolanaPrepared":
        paid = {n: await self.adapter.send_accounts(dst_domain, n) for n in {len(p) for p in payloads}}
        instructions = self._instructions(dst_domain, receivers, payloads, paid)
        blockhash = await self._blockhash()
        return SolanaPrepared(instructions, self._sign(instructions, 0, blockhash), time.monotonic())

    async def submit(self, prepared: "SolanaPrepared") -> Burst:
        opts = {"encoding": "base64", "skipPreflight": True, "maxRetries": 0}
        signed = list(prepared.signed)
        signed_at = prepared.signed_at
        burst = Burst(self.name, [])
        burst.started = time.time()
        step = RPC_BATCH * IN_FLIGHT
        for start in range(0, len(signed), step):
            if time.monotonic() - signed_at > SOLANA_RESIGN_AFTER_S:  # the rest with a fresh blockhash
                signed[start:] = self._sign(prepared.instructions[start:], start, await self._blockhash())
                signed_at = time.monotonic()
            part = signed[start:start + step]
            chunks = [part[i:i + RPC_BATCH] for i in range(0, len(part), RPC_BATCH)]
            results = await asyncio.gather(*(self.rpc.batch([("sendTransaction", [raw, opts]) for _, raw in chunk])
                                             for chunk in chunks))
            for chunk, sigs in zip(chunks, results):
                for (want, _), got in zip(chunk, sigs):
                    if got != want:
                        raise LoadError(f"{self.name}: node returned signature {got} for transaction {want}")
            burst.tx_ids.extend(sig for sig, _ in part)
        burst.all_submitted = time.time()
        return burst

    async def _start(self) -> None:
        pass

    async def _due(self, prepared: "SolanaPrepared", start: int, stop: int, rate: float) -> list[tuple[str, str]]:
        """The transactions [start, stop), first signed again (with the next second's worth) when any
        of them has a blockhash older than SOLANA_RESIGN_AFTER_S - 1 s: none goes out older than that."""
        if time.monotonic() - min(prepared.signed_at_of[start:stop]) > SOLANA_RESIGN_AFTER_S - 1.0:
            end = min(len(prepared), max(stop, start + math.ceil(rate)))
            fetched = time.monotonic()  # before the call: the blockhash is at least this fresh
            blockhash = await self._blockhash()
            prepared.signed[start:end] = self._sign(prepared.instructions[start:end], start, blockhash)
            prepared.signed_at_of[start:end] = [fetched] * (end - start)
        return prepared.signed[start:stop]

    async def _send(self, chunk: list[tuple[str, str]]) -> None:
        opts = {"encoding": "base64", "skipPreflight": True, "maxRetries": 0}
        sigs = await self.rpc.batch([("sendTransaction", [raw, opts]) for _, raw in chunk])
        for (want, _), got in zip(chunk, sigs):
            if got != want:
                raise LoadError(f"{self.name}: node returned signature {got} for transaction {want}")

    async def wait_included(self, burst: Burst, timeout: float = 300, poll: float = 0.1) -> None:
        """Polls getSignatureStatuses (256 a call) until every transaction landed; a failed one is an error."""
        pending = list(burst.tx_ids)
        deadline = time.monotonic() + timeout
        while pending:
            chunks = [pending[i:i + 256] for i in range(0, len(pending), 256)]
            results = await self.rpc.batch([("getSignatureStatuses", [chunk]) for chunk in chunks])
            now = time.time()
            still = []
            for chunk, result in zip(chunks, results):
                for sig, status in zip(chunk, result["value"]):
                    if status is None:
                        still.append(sig)
                    elif status.get("err") is not None:
                        raise LoadError(f"{self.name}: transaction {sig} failed: {status['err']}")
                    else:
                        burst.included_at[sig] = now
                        burst.positions[sig] = status["slot"]
            pending = still
            if not pending:
                break
            if time.monotonic() > deadline:
                raise LoadError(f"{self.name}: {len(pending)} of {len(burst.tx_ids)} transactions not landed after "
                                f"{timeout:.0f}s, e.g. {pending[0]}")
            await asyncio.sleep(poll)

    async def message_ids(self, burst: Burst) -> list[bytes]:
        """From each transaction's logs: exactly one envelope the program itself logged."""
        from adapters.solana.program import sent_envelopes_of

        ids = []
        opts = {"encoding": "json", "commitment": "confirmed", "maxSupportedTransactionVersion": 0}
        for i in range(0, len(burst.tx_ids), RPC_BATCH):
            sigs = burst.tx_ids[i:i + RPC_BATCH]
            txs = await self.rpc.batch([("getTransaction", [s, opts]) for s in sigs])
            for sig, tx in zip(sigs, txs):
                if tx is None:
                    raise LoadError(f"{self.name}: transaction {sig} not found at confirmed")
                envelopes = sent_envelopes_of(tx["meta"].get("logMessages") or [], self.program_id)
                if len(envelopes) != 1:
                    raise LoadError(f"{self.name}: send {sig} logged {len(envelopes)} envelopes, expected 1")
                ids.append(Envelope.decode(envelopes[0]).message_id)
        return ids


@dataclass
class SolanaPrepared:
    instructions: list[list[Any]]
    signed: list[tuple[str, str]]  # (signature, base64 transaction)
    signed_at: float  # time.monotonic() of the blockhash
    signed_at_of: list[float] = field(default_factory=list)  # per transaction (paced submission re-signs chunks)

    def __post_init__(self) -> None:
        if not self.signed_at_of:
            self.signed_at_of = [self.signed_at] * len(self.signed)

    def __len__(self) -> int:
        return len(self.signed)


def load_for(name: str, chain: Any, adapter: Any) -> EvmLoad | SolanaLoad:
    if chain.kind == "evm":
        return EvmLoad(name, chain, adapter)
    if chain.kind == "solana":
        return SolanaLoad(name, chain, adapter)
    raise LoadError(f"chain {name!r}: no load generator for kind {chain.kind!r}")


async def chain_rate(load: EvmLoad | SolanaLoad, dst_domain: int, receivers: list[bytes],
                     payloads: list[bytes]) -> Burst:
    """The chain's own rate for these sends: a raw burst, first submission to last inclusion."""
    prepared = await load.prepare(dst_domain, receivers, payloads)
    burst = await load.submit(prepared)
    await load.wait_included(burst)
    return burst


# --- paced submission (sustained load) --------------------------------------------------------------

def due_by(rate: float, tick_index: int, n: int, tick: float = TICK_S) -> int:
    """How many of n transactions are due once tick `tick_index` (0-based, at tick_index * tick
    seconds) has come: rate * tick * (tick_index + 1), rounded down, at most n."""
    return min(n, int(rate * tick * (tick_index + 1) + 1e-9))


async def submit_paced(load: EvmLoad | SolanaLoad, prepared: Any, rate: float, tick: float = TICK_S) -> Burst:
    """Submits the prepared transactions at `rate` per second: at every tick whatever is due by then
    (a late tick catches up, nothing goes ahead of the schedule), up to IN_FLIGHT requests at once
    without waiting for inclusion. Each transaction's submission time is when its request went out."""
    if not rate > 0 or not math.isfinite(rate):
        raise LoadError(f"paced rate must be a positive number, got {rate!r}")
    n = len(prepared)
    burst = Burst(load.name, [""] * n)
    sem = asyncio.Semaphore(IN_FLIGHT)
    tasks: list[asyncio.Task] = []

    async def send(chunk: list[tuple[str, str]]) -> None:
        async with sem:
            at = time.time()
            await load._send(chunk)
        for tx_id, _ in chunk:
            burst.submitted_at[tx_id] = at

    await load._start()
    origin = time.monotonic()
    sent = 0
    try:
        while sent < n:
            k = int((time.monotonic() - origin) / tick)
            due = due_by(rate, k, n, tick)
            if due > sent:
                items = await load._due(prepared, sent, due, rate)
                for i in range(0, len(items), RPC_BATCH):
                    chunk = items[i:i + RPC_BATCH]
                    burst.tx_ids[sent + i:sent + i + len(chunk)] = [tx_id for tx_id, _ in chunk]
                    tasks.append(asyncio.create_task(send(chunk)))
                sent = due
            for task in tasks:
                if task.done() and task.exception() is not None:
                    raise task.exception()
            await asyncio.sleep(max(0.0, origin + (k + 1) * tick - time.monotonic()))
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    burst.started = min(burst.submitted_at.values())
    burst.all_submitted = time.time()
    return burst


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


@dataclass
class PacedStats:
    n: int
    rate: float  # asked for
    duration: float  # asked for
    offered: float  # n over first submission .. last submission + one tick
    offered_per_second: list[int]  # submissions in each second from the first
    first_confirmed: float  # seconds from the first submission
    last_confirmed: float
    delivered_window: float  # confirmed per second over [first confirmed, last confirmed]
    steady_from: float
    steady: float  # confirmed per second between steady_from and duration
    latency: dict[str, dict[str, float]]  # "first half" / "second half" -> p50, p90, p99, max (s)
    backlog: list[int]  # submitted but not confirmed, at +1 s, +2 s, ... until it is 0 after the last submission


def paced_stats(submitted: list[float], confirmed: list[float], rate: float, duration: float,
                steady_from: float = 2.0, tick: float = TICK_S) -> PacedStats:
    """From each message's submission and confirmation time (same order, same clock): the figures of
    a sustained run. The halves are by submission time: before and after duration / 2."""
    if not submitted or len(submitted) != len(confirmed):
        raise ValueError(f"need one confirmation time per submission, got {len(submitted)} and {len(confirmed)}")
    if not 0 <= steady_from < duration:
        raise ValueError(f"the steady part starts at {steady_from} s, not inside a {duration} s run")
    if any(c < s for s, c in zip(submitted, confirmed)):
        raise ValueError("a message confirmed before it was submitted: the clocks differ")
    t0 = min(submitted)
    subs = [s - t0 for s in submitted]
    confs = [c - t0 for c in confirmed]
    n = len(subs)
    offered_per_second = [0] * (int(max(subs)) + 1)
    for s in subs:
        offered_per_second[int(s)] += 1
    first_c, last_c = min(confs), max(confs)
    latency = {}
    for name, pick in (("first half", lambda s: s < duration / 2), ("second half", lambda s: s >= duration / 2)):
        lat = [c - s for s, c in zip(subs, confs) if pick(s)]
        latency[name] = ({"p50": _pct(lat, .5), "p90": _pct(lat, .9), "p99": _pct(lat, .99), "max": max(lat)}
                         if lat else {})
    backlog = []
    second = 1
    while True:
        waiting = sum(1 for s in subs if s <= second) - sum(1 for c in confs if c <= second)
        backlog.append(waiting)
        if second > max(subs) and waiting == 0:
            break
        second += 1
    return PacedStats(
        n=n, rate=rate, duration=duration, offered=n / (max(subs) + tick), offered_per_second=offered_per_second,
        first_confirmed=first_c, last_confirmed=last_c,
        delivered_window=(n - 1) / (last_c - first_c) if last_c > first_c else math.inf,
        steady_from=steady_from,
        steady=sum(1 for c in confs if steady_from <= c <= duration) / (duration - steady_from),
        latency=latency, backlog=backlog)


def sustained_verdict(rate: float, steady: float, p99_first: float, p99_second: float) -> tuple[bool, str]:
    """Kept up only if the steady delivered rate is >= 95 % of the offered rate AND the second half's
    p99 latency is at most 1.5 x the first half's + 0.5 s (a relay that keeps up has a flat latency;
    one that falls behind shows it growing)."""
    rate_ok = steady >= 0.95 * rate
    bound = 1.5 * p99_first + 0.5
    latency_ok = p99_second <= bound
    figures = (f"steady {steady:.1f}/s {'>=' if rate_ok else '<'} {0.95 * rate:.1f}/s (95 %); p99 latency "
               f"{p99_first:.2f} s -> {p99_second:.2f} s {'<=' if latency_ok else '>'} {bound:.2f} s (1.5 x + 0.5 s)")
    kept = rate_ok and latency_ok
    return kept, f"sustained {rate:g} msg/s: {'kept up' if kept else 'fell behind'} ({figures})"


# --- CPU per process (/proc/<pid>/stat) ----------------------------------------------------------

_TICK = None


def cpu_seconds(pid: int, reaped: bool = True) -> float | None:
    """utime + stime of `pid` (plus its reaped children's with `reaped`), in seconds; None when it is gone."""
    global _TICK
    if _TICK is None:
        _TICK = os.sysconf("SC_CLK_TCK")
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2:].split()
    # fields[0] is field 3 (state): utime, stime, cutime, cstime are fields 14-17.
    return sum(int(x) for x in fields[11:15 if reaped else 13]) / _TICK


def _children_of() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    text = f.read()
            except OSError:
                continue
            ppid = int(text[text.rindex(")") + 2:].split()[1])
            out.setdefault(ppid, []).append(int(entry))
    return out


def process_cpu(named_pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far per named process, each with its live descendants added except those
    named themselves (the bench process is the parent of the whole stack: it counts only itself)."""
    children = _children_of()
    named = set(named_pids.values())
    out = {}
    for name, pid in named_pids.items():
        total, todo = 0.0, [pid]
        while todo:
            p = todo.pop()
            total += cpu_seconds(p, reaped=p != os.getpid()) or 0.0
            todo.extend(c for c in children.get(p, []) if c not in named)
        out[name] = total
    return out
