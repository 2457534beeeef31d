"""The Gateway contract and the EVM adapter on a real anvil: watching with finality and reorgs,
end-to-end delivery of committee-signed envelopes, failed handlers and retries, RPC failover, and
stuck-transaction replacement."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from web3 import AsyncWeb3
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

import attest
from adapters.evm import deploy as evm_deploy
from adapters.evm.rpc import decode_revert, revert_data
from adapters.evm.devnet import AnvilProcess, free_port
from adapters.endpoints import AllEndpointsFailed
from adapters.evm.gateway import (
    AlreadyDeliveredError,
    DeliveryRejected,
    EvmAdapter,
    deploy_gateway,
    deploy_recording_receiver,
)
from attest.bn254 import hash_to_g1_hint
from relay.interfaces import DeliveryState, Observation, SignedDelivery
from relay.config import EvmChain
from attest.bn254 import P
from relay.envelope import Envelope, address_to_bytes32
from relay.protocol import MessageKind
from tests.support import evm
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

DOMAIN = 31337
REMOTE = 424242  # the other chain's domain in these tests
EPOCH = 1


@dataclass
class Setup:
    node: AnvilProcess
    w3: AsyncWeb3
    committee: attest.Committee
    shares: list[attest.KeyShare]
    verifier: str
    gateway: str
    receiver: str

    @property
    def deployer(self) -> str:
        return self.node.private_keys[0]

    @property
    def relayer_key(self) -> str:
        return self.node.private_keys[1]

    def rpc(self, method: str, *params: Any) -> Any:
        return evm.rpc(self.node, method, *params)

    def mine(self, blocks: int = 1) -> None:
        evm.mine(self.node, blocks)

    def chain(self, confirmations: int | None = 2, rpc_urls: list[str] | None = None,
              ws_urls: list[str] | None = None) -> EvmChain:
        return EvmChain(kind="evm", domain=DOMAIN, chain_id=DOMAIN, rpc_urls=rpc_urls or [self.node.rpc_url],
                        ws_urls=ws_urls or [], confirmations=confirmations, contracts={"Gateway": self.gateway})

    def adapter(self, confirmations: int | None = 2, **options: Any) -> EvmAdapter:
        rpc_urls = options.pop("rpc_urls", None)
        ws_urls = options.pop("ws_urls", None)
        key = options.pop("key", self.relayer_key)
        options.setdefault("poll_interval", 0.1)
        return EvmAdapter("evm", self.chain(confirmations, rpc_urls, ws_urls), key, **options)

    def sign(self, envelope: Envelope, signers: tuple[int, ...] = (1, 3, 4)) -> bytes:
        digest = envelope.digest(EPOCH)
        partials = [attest.partial_sign(self.shares[i - 1], digest) for i in signers]
        return attest.combine_signatures(partials)

    def inbound(self, nonce: int, payload: bytes = b"", receiver: str | None = None,
                kind: int = MessageKind.TASK_REQUEST) -> Envelope:
        return Envelope(kind, nonce, REMOTE, b"\x00" * 12 + b"\x5e" * 20, DOMAIN,
                        address_to_bytes32(receiver or self.receiver), payload)

    def contract(self, name: str, address: str) -> Any:
        return evm_deploy.contract(self.w3, name, address)


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    async with evm.anvil_with_committee(DOMAIN, EPOCH) as anvil:
        gateway = await deploy_gateway(anvil.w3, anvil.deployer, anvil.verifier, DOMAIN, fee=0)
        receiver = await deploy_recording_receiver(anvil.w3, anvil.deployer, gateway)
        yield Setup(anvil.node, anvil.w3, anvil.committee, anvil.shares, anvil.verifier, gateway, receiver)


async def _collect(adapter: EvmAdapter, cursor: str | None, into: list[Observation]) -> None:
    async for observation in adapter.watch(cursor):
        into.append(observation)


async def _status_until(adapter: EvmAdapter, tx: str, state: DeliveryState, setup: Setup | None = None,
                        timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        status = await adapter.delivery_status(tx)
        if status.state is state:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"{tx} still {status} after {timeout}s, expected {state}")
        if setup is not None:
            setup.mine()
        await asyncio.sleep(0.05)


# --- watching -----------------------------------------------------------------------------


async def test_watch_yields_messages_only_once_final_in_order_and_resumes(setup: Setup) -> None:
    sender = setup.adapter(confirmations=2)
    await sender.start()
    to = b"\x00" * 31 + b"\x01"
    sent = [await sender.send_message(REMOTE, to, MessageKind.TASK_REQUEST, f"task {i}".encode()) for i in range(2)]
    envelopes = [e for e, _ in sent]
    assert [e.nonce for e in envelopes] == [0, 1]
    account = address_to_bytes32(sender.account.address)
    assert all(e.src_domain == DOMAIN and e.src_sender == account and e.dst_domain == REMOTE for e in envelopes)

    watcher = setup.adapter(confirmations=2)
    passes = evm.WatchPasses(watcher)
    seen: list[Observation] = []
    task = asyncio.create_task(_collect(watcher, None, seen))
    try:
        await passes.whole()
        assert seen == [], "yielded before the block had 2 confirmations"
        setup.mine()  # the first message's block now has 2 blocks on top
        await wait_for(lambda: len(seen) == 1, what="first message", timeout=5.0)
        await passes.whole()
        assert len(seen) == 1, "the second message was yielded before it was final"
        setup.mine()
        await wait_for(lambda: len(seen) == 2, what="second message", timeout=5.0)
        assert [o.envelope for o in seen] == envelopes
        assert [o.source_tx for o in seen] == [tx for _, tx in sent]
        assert seen[0].position < seen[1].position
    finally:
        task.cancel()
        await watcher.close()

    # A watcher resuming from the saved cursor yields only what came after it.
    third, third_tx = await sender.send_message(REMOTE, to, MessageKind.DATA, b"third")
    setup.mine(2)
    resumed = setup.adapter(confirmations=2)
    resumed_passes = evm.WatchPasses(resumed)
    later: list[Observation] = []
    task = asyncio.create_task(_collect(resumed, seen[-1].cursor, later))
    try:
        await wait_for(lambda: len(later) >= 1, what="third message", timeout=5.0)
        await resumed_passes.whole()
        assert [o.envelope for o in later] == [third] and third.nonce == 2
        assert later[0].source_tx == third_tx
    finally:
        task.cancel()
        await resumed.close()
        await sender.close()


async def test_reorg_before_finality_never_yields_the_orphaned_envelope(setup: Setup) -> None:
    sender = setup.adapter(confirmations=3)
    orphan, orphan_tx = await sender.send_message(REMOTE, b"\x00" * 31 + b"\x02", MessageKind.DATA, b"orphan")
    await sender.close()
    held = (await setup.w3.eth.get_transaction_receipt(orphan_tx))["blockNumber"]
    head = await setup.w3.eth.block_number
    assert held == head
    # Replace the last 2 blocks (the one holding the message among them) with empty ones.
    setup.rpc("anvil_reorg", 2, [])
    assert await setup.w3.eth.block_number == head

    watcher = setup.adapter(confirmations=3)
    passes = evm.WatchPasses(watcher)
    seen: list[Observation] = []
    task = asyncio.create_task(_collect(watcher, None, seen))
    try:
        setup.mine(5)  # far past the orphan's height + confirmations
        await passes.whole()
        assert seen == [], f"an orphaned envelope was yielded: {seen}"
        assert await watcher.reobserve(orphan_tx) == []
        assert await watcher.find_nonce(0) is None

        # The chain goes on: the gateway's nonce rolled back with the reorg, and a new message is seen.
        sender = setup.adapter(confirmations=3)
        fresh, fresh_tx = await sender.send_message(REMOTE, b"\x00" * 31 + b"\x02", MessageKind.DATA, b"fresh")
        await sender.close()
        assert fresh.nonce == 0 and fresh != orphan
        assert await watcher.reobserve(fresh_tx) == [], "reobserve returned a message that is not final"
        setup.mine(3)
        await wait_for(lambda: len(seen) == 1, what="the message sent after the reorg", timeout=5.0)
        assert seen[0].envelope == fresh
        (again,) = await watcher.reobserve(fresh_tx)
        assert again.envelope == fresh and again.source_tx == fresh_tx
        found = await watcher.find_nonce(0)
        assert found is not None and found.envelope == fresh
    finally:
        task.cancel()
        await watcher.close()


async def test_newheads_subscription_wakes_the_watcher(setup: Setup) -> None:
    # A poll interval far longer than the test: only the WS subscription can wake the watcher.
    watcher = setup.adapter(confirmations=1, poll_interval=30.0, ws_urls=[setup.node.ws_url])
    sender = setup.adapter(confirmations=1)
    seen: list[Observation] = []
    task = asyncio.create_task(_collect(watcher, None, seen))
    try:
        await asyncio.wait_for(watcher.head_subscription.wait(), 5.0)
        await asyncio.sleep(0.2)  # the wake-up the subscription itself gives has been used
        envelope, _ = await sender.send_message(REMOTE, b"\x00" * 31 + b"\x03", MessageKind.DATA, b"ws")
        setup.mine()
        await wait_for(lambda: len(seen) == 1, timeout=3.0, what="a WS-woken watcher")
        assert seen[0].envelope == envelope
    finally:
        task.cancel()
        await watcher.close()
        await sender.close()


# --- delivering -----------------------------------------------------------------------------


async def test_deliver_end_to_end_with_a_threshold_signature(setup: Setup) -> None:
    adapter = setup.adapter(confirmations=2)
    await adapter.start()
    envelope = setup.inbound(0, b"summarise this")
    delivery = SignedDelivery(envelope=envelope, epoch=EPOCH, signature=setup.sign(envelope))
    assert not await adapter.is_delivered(envelope.message_id)

    tx = await adapter.submit(delivery)
    # anvil's automine mines right after accepting the transaction, but on a busy machine the
    # receipt can lag the send by a moment ("not mined yet"): wait for it, then it is not final.
    for _ in range(100):
        status = await adapter.delivery_status(tx)
        if "not mined yet" not in status.detail:
            break
        await asyncio.sleep(0.05)
    assert status.state is DeliveryState.PENDING and "not final" in status.detail
    # The adapter delivers with the hash-to-curve hint it computed from the digest.
    sent = await setup.w3.eth.get_transaction(tx)
    fn, args = setup.contract("Gateway", setup.gateway).decode_function_input(sent["input"])
    assert fn.fn_name == "deliverWithHint"
    assert (args["k"], args["y"], args["ySqrt"]) == hash_to_g1_hint(envelope.digest(EPOCH))
    status = await _status_until(adapter, tx, DeliveryState.CONFIRMED, setup)
    assert tx in status.detail
    assert await adapter.is_delivered(envelope.message_id)
    assert await adapter.delivery_tx(envelope.message_id) == tx

    receiver = setup.contract("RecordingReceiver", setup.receiver)
    assert await receiver.functions.count().call() == 1
    record = await receiver.functions.record(0).call()
    assert record[0] == envelope.message_id and record[1] == REMOTE and record[3] == envelope.kind
    assert record[5] == b"summarise this"

    with pytest.raises(AlreadyDeliveredError, match="AlreadyDelivered"):
        await adapter.submit(delivery)
    assert await adapter.is_delivered(envelope.message_id)
    assert await receiver.functions.count().call() == 1

    # A signature that is not the committee's (2 of 4 partials, below the threshold) is refused.
    other = setup.inbound(1, b"forged")
    forged = SignedDelivery(envelope=other, epoch=EPOCH, signature=setup.sign(other, signers=(1, 2)))
    with pytest.raises(DeliveryRejected, match="InvalidSignature"):
        await adapter.submit(forged)
    assert not await adapter.is_delivered(other.message_id)
    await adapter.close()


async def test_reverting_receiver_is_delivered_as_failed_then_retried(setup: Setup) -> None:
    adapter = setup.adapter(confirmations=1)
    receiver = setup.contract("RecordingReceiver", setup.receiver)
    gateway = setup.contract("Gateway", setup.gateway)
    await evm_deploy.transact(setup.w3, setup.deployer, receiver.functions.setFailing(True))

    envelope = setup.inbound(7, b"will fail first")
    delivery = SignedDelivery(envelope=envelope, epoch=EPOCH, signature=setup.sign(envelope))
    tx = await adapter.submit(delivery)
    # Final, recorded by the gateway, but its handler failed: not delivered, retryable (issue 12).
    status = await _status_until(adapter, tx, DeliveryState.HANDLER_FAILED, setup)
    assert "retryFailed" in status.detail
    assert not await adapter.is_delivered(envelope.message_id)
    assert await gateway.functions.deliveryStatus(envelope.message_id).call() == 2
    receipt = await setup.w3.eth.get_transaction_receipt(tx)
    failed = gateway.events.HandlerFailed().process_receipt(receipt, errors=DISCARD)
    delivered = gateway.events.MessageDelivered().process_receipt(receipt, errors=DISCARD)
    assert len(failed) == 1 and failed[0]["args"]["messageId"] == envelope.message_id
    assert delivered[0]["args"]["handled"] is False
    assert decode_revert(receiver.abi, failed[0]["args"]["reason"]).startswith("ReceiverFailing")

    # Submitting it again re-runs the handler (retryFailed); while it still fails, nothing is sent.
    with pytest.raises(DeliveryRejected, match="HandlerStillFailing"):
        await adapter.submit(delivery)
    with pytest.raises(DeliveryRejected, match="HandlerStillFailing"):
        await adapter.retry_failed(envelope)
    with pytest.raises(evm_deploy.TransactionReverted, match="HandlerStillFailing"):
        await evm_deploy.transact(setup.w3, setup.deployer, gateway.functions.retryFailed(envelope.encode()))

    await evm_deploy.transact(setup.w3, setup.deployer, receiver.functions.setFailing(False))
    retried = await adapter.submit(delivery)
    await _status_until(adapter, retried, DeliveryState.CONFIRMED, setup)
    assert await adapter.is_delivered(envelope.message_id)
    assert await gateway.functions.deliveryStatus(envelope.message_id).call() == 1
    assert await receiver.functions.count().call() == 1
    # Handled now: a further delivery or retry is refused before sending.
    with pytest.raises(AlreadyDeliveredError):
        await adapter.submit(delivery)
    with pytest.raises(DeliveryRejected, match="NotFailed"):
        await adapter.retry_failed(envelope)
    await adapter.close()


async def test_estimated_gas_is_enough_for_a_heavy_handler(setup: Setup) -> None:
    adapter = setup.adapter(confirmations=0)
    receiver = setup.contract("RecordingReceiver", setup.receiver)
    gateway = setup.contract("Gateway", setup.gateway)
    await evm_deploy.transact(setup.w3, setup.deployer, receiver.functions.setBurn(1500))

    # At exactly eth_estimateGas's limit (no margin) the handler must run, not be starved into "failed".
    envelope = setup.inbound(20, b"heavy")
    call = gateway.functions.deliver(envelope.encode(), EPOCH, setup.sign(envelope))
    estimate = await call.estimate_gas({"from": adapter.account.address})
    assert estimate > 300_000, estimate  # the verify (~150k) plus a handler that burns a lot
    receipt = await evm_deploy.transact(setup.w3, setup.relayer_key, call, gas=estimate)
    assert receipt["status"] == 1
    assert await gateway.functions.deliveryStatus(envelope.message_id).call() == 1

    # And through the adapter (estimate x 1.2).
    second = setup.inbound(21, b"heavy too")
    tx = await adapter.submit(SignedDelivery(envelope=second, epoch=EPOCH, signature=setup.sign(second)))
    await _status_until(adapter, tx, DeliveryState.CONFIRMED)
    assert await gateway.functions.deliveryStatus(second.message_id).call() == 1
    assert await receiver.functions.count().call() == 2
    await adapter.close()


async def test_hinted_delivery_costs_less_and_bent_hints_are_refused(setup: Setup) -> None:
    gateway = setup.contract("Gateway", setup.gateway)
    no_code = "0x000000000000000000000000000000000000dEaD"
    # Two messages whose hash needs increments, one delivered each way, to a receiver without code
    # (verification and bookkeeping only).
    envelopes = [e for e in (setup.inbound(n, b"hint", receiver=no_code) for n in range(100, 200))
                 if hash_to_g1_hint(e.digest(EPOCH))[0] >= 1][:2]
    hinted_env, plain_env = envelopes
    k, y, y_sqrt = hash_to_g1_hint(hinted_env.digest(EPOCH))
    signature = setup.sign(hinted_env)

    sx, sy = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    neg_sig = sx.to_bytes(32, "big") + (P - sy).to_bytes(32, "big")
    bent = {
        "wrong k": (signature, k - 1, y, y_sqrt, "HintNotOnCurve"),
        "negated sigma and y": (neg_sig, k, P - y, pow(P - y, (P + 1) // 4, P), "HintNotCanonical()"),
        "y >= p": (signature, k, y + P, y_sqrt, "HintOutOfRange()"),
    }
    errors = gateway.abi + evm_deploy.error_abi("CommitteeVerifier")
    for name, (sig, k_, y_, root, error) in bent.items():
        call = gateway.functions.deliverWithHint(hinted_env.encode(), EPOCH, sig, k_, y_, root)
        with pytest.raises(evm_deploy.TransactionReverted) as caught:
            await evm_deploy.transact(setup.w3, setup.relayer_key, call, gas=300_000)
        receipt = caught.value.receipt
        assert receipt is None or receipt["status"] == 0
        try:
            await call.call()
            reason = None
        except ContractLogicError as exc:
            reason = decode_revert(errors, revert_data(exc))
        assert reason is not None and reason.startswith(error), f"{name}: {reason}"
    assert await gateway.functions.deliveryStatus(hinted_env.message_id).call() == 0

    hinted = await evm_deploy.transact(
        setup.w3, setup.relayer_key, gateway.functions.deliverWithHint(hinted_env.encode(), EPOCH, signature, k, y, y_sqrt)
    )
    plain = await evm_deploy.transact(
        setup.w3, setup.relayer_key, gateway.functions.deliver(plain_env.encode(), EPOCH, setup.sign(plain_env))
    )
    plain_k = hash_to_g1_hint(plain_env.digest(EPOCH))[0]
    print(f"deliverWithHint (k={k}) {hinted['gasUsed']} gas, deliver (k={plain_k}) {plain['gasUsed']} gas")
    assert hinted["status"] == 1 and plain["status"] == 1
    # Same envelope length and receiver: the difference is the modexps (~4.5k each) less the
    # hint's calldata (~1.2k).
    assert hinted["gasUsed"] < plain["gasUsed"] - 4_000 * plain_k + 1_500
    for env in envelopes:
        assert await gateway.functions.deliveryStatus(env.message_id).call() == 2  # no code: failed, retryable
    with pytest.raises(evm_deploy.TransactionReverted, match="AlreadyDelivered"):
        await evm_deploy.transact(
            setup.w3, setup.relayer_key,
            gateway.functions.deliverWithHint(hinted_env.encode(), EPOCH, signature, k, y, y_sqrt), gas=300_000,
        )


async def test_losing_a_delivery_race_is_reverted_with_the_decoded_error(setup: Setup) -> None:
    first = setup.adapter(confirmations=1)
    second = setup.adapter(confirmations=1, key=setup.node.private_keys[2])  # another relayer
    envelope = setup.inbound(30, b"raced")
    delivery = SignedDelivery(envelope=envelope, epoch=EPOCH, signature=setup.sign(envelope))
    setup.rpc("evm_setAutomine", False)
    tx_a = await first.submit(delivery)
    tx_b = await second.submit(delivery)  # estimated before either is mined: both look valid
    setup.mine(2)
    setup.rpc("evm_setAutomine", True)
    states = {tx: await x.delivery_status(tx) for tx, x in ((tx_a, first), (tx_b, second))}
    winner = [tx for tx, s in states.items() if s.state is DeliveryState.CONFIRMED]
    loser = [s for s in states.values() if s.state is DeliveryState.REVERTED]
    assert len(winner) == 1 and len(loser) == 1, states
    assert loser[0].detail.startswith("AlreadyDelivered("), loser[0].detail
    assert await first.is_delivered(envelope.message_id)
    await first.close()
    await second.close()


# --- failover ---------------------------------------------------------------------------------


async def test_failover_to_the_second_endpoint_and_health(setup: Setup) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    adapter = setup.adapter(confirmations=1, rpc_urls=[dead, setup.node.rpc_url], pool_attempts=2)
    await adapter.start()
    envelope = setup.inbound(40, b"via the second endpoint")
    tx = await adapter.submit(SignedDelivery(envelope=envelope, epoch=EPOCH, signature=setup.sign(envelope)))
    await _status_until(adapter, tx, DeliveryState.CONFIRMED, setup)
    first, second = adapter.health()
    assert first.url == dead and not first.healthy and first.total_errors >= 1
    assert "Connect" in first.last_error or "connect" in first.last_error.lower()
    assert second.healthy and second.total_errors == 0
    await adapter.close()

    nowhere = setup.adapter(confirmations=1, pool_attempts=2, rpc_urls=[dead, f"http://127.0.0.1:{free_port()}"])
    with pytest.raises(AllEndpointsFailed, match="failed on every endpoint.*Check that the nodes are up"):
        await nowhere.is_delivered(envelope.message_id)
    assert not any(h.healthy for h in nowhere.health())
    await nowhere.close()


# --- stuck and dropped transactions ---------------------------------------------------------------


async def test_stuck_delivery_is_resent_with_bumped_fees_and_confirms(setup: Setup) -> None:
    adapter = setup.adapter(confirmations=1, stuck_after=0.3)
    envelope = setup.inbound(50, b"stuck")
    setup.rpc("evm_setAutomine", False)
    tx = await adapter.submit(SignedDelivery(envelope=envelope, epoch=EPOCH, signature=setup.sign(envelope)))
    original = await setup.w3.eth.get_transaction(tx)
    # The node forgets it, as a mempool under pressure would.
    setup.rpc("anvil_dropTransaction", tx)
    assert (await adapter.delivery_status(tx)).state is DeliveryState.PENDING
    await asyncio.sleep(0.4)
    status = await adapter.delivery_status(tx)
    assert status.state is DeliveryState.PENDING and "re-sent" in status.detail
    (replacement,) = adapter.replacements(tx)
    bumped = await setup.w3.eth.get_transaction(replacement)
    assert bumped["nonce"] == original["nonce"]
    assert bumped["maxFeePerGas"] * 8 >= original["maxFeePerGas"] * 9
    assert bumped["maxPriorityFeePerGas"] * 8 >= original["maxPriorityFeePerGas"] * 9
    setup.mine(2)
    setup.rpc("evm_setAutomine", True)
    status = await adapter.delivery_status(tx)  # the original's id follows its replacement
    assert status.state is DeliveryState.CONFIRMED and replacement in status.detail
    assert await adapter.is_delivered(envelope.message_id)
    await adapter.close()


async def test_delivery_whose_nonce_was_taken_is_dropped(setup: Setup) -> None:
    adapter = setup.adapter(confirmations=1, stuck_after=60)
    envelope = setup.inbound(60, b"dropped")
    setup.rpc("evm_setAutomine", False)
    tx = await adapter.submit(SignedDelivery(envelope=envelope, epoch=EPOCH, signature=setup.sign(envelope)))
    nonce = (await setup.w3.eth.get_transaction(tx))["nonce"]
    setup.rpc("anvil_dropTransaction", tx)
    # The same account spends that nonce on something else (another tool sharing the key).
    account = setup.w3.eth.account.from_key(setup.relayer_key)
    other = account.sign_transaction({
        "to": account.address, "value": 1, "nonce": nonce, "gas": 21_000, "chainId": DOMAIN,
        "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
    })
    await setup.w3.eth.send_raw_transaction(other.raw_transaction)
    setup.mine()
    setup.rpc("evm_setAutomine", True)
    status = await adapter.delivery_status(tx)
    assert status.state is DeliveryState.DROPPED and f"nonce {nonce}" in status.detail
    assert not await adapter.is_delivered(envelope.message_id)
    await adapter.close()


async def test_stuck_delivery_still_in_the_mempool_is_replaced_not_duplicated(setup: Setup) -> None:
    # The original stays in anvil's pool: the replacement must outbid it (same nonce, +12.5 %).
    adapter = setup.adapter(confirmations=0, stuck_after=0.2)
    envelope = setup.inbound(70, b"replace me")
    setup.rpc("evm_setAutomine", False)
    tx = await adapter.submit(SignedDelivery(envelope=envelope, epoch=EPOCH, signature=setup.sign(envelope)))
    await asyncio.sleep(0.3)
    status = await adapter.delivery_status(tx)
    assert "re-sent" in status.detail, status
    (replacement,) = adapter.replacements(tx)
    pool = setup.rpc("txpool_content")["pending"]
    assert len(pool) == 1 and len(next(iter(pool.values()))) == 1, "the replacement must take the original's place"
    setup.mine()
    setup.rpc("evm_setAutomine", True)
    status = await adapter.delivery_status(tx)
    assert status.state is DeliveryState.CONFIRMED and replacement in status.detail
    assert await setup.w3.eth.get_transaction_receipt(replacement) is not None


async def test_finalized_tag_is_used_when_confirmations_are_unset(setup: Setup) -> None:
    sender = setup.adapter(confirmations=None)
    envelope, tx = await sender.send_message(REMOTE, b"\x00" * 31 + b"\x04", MessageKind.DATA, b"finalized")
    held = (await setup.w3.eth.get_transaction_receipt(tx))["blockNumber"]
    setup.mine(3)
    assert await sender.final_block() < held
    assert await sender.reobserve(tx) == []
    passes = evm.WatchPasses(sender)
    seen: list[Observation] = []
    task = asyncio.create_task(_collect(sender, None, seen))
    try:
        await passes.whole()
        assert seen == []
        setup.rpc("anvil_mine", hex(100))  # anvil finalizes blocks a fixed depth under the head
        await wait_for(lambda: len(seen) == 1, what="a finalized message", timeout=5.0)
        assert seen[0].envelope == envelope and await sender.final_block() >= held
    finally:
        task.cancel()
        await sender.close()
