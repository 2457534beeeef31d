"""The computed gas limit of a single EVM delivery (adapters/evm/gateway.py delivery_gas_limit, used
instead of eth_estimateGas) on a real anvil: enough for the gateway's own work with its largest
envelope, a handler always gets all of MAX_HANDLER_GAS under it, a limit too low never consumes a
message (the gateway reverts), a refused delivery is caught before anything is sent, and a limit that
turns out too low falls back to the estimate. The same for a batch's measured limit (batch_gas_limit,
from one eth_createAccessList): every handler is offered all of MAX_HANDLER_GAS, even one whose
outcome depends on gasleft() (a starved batch reverts whole: the gateway records a failure only
for a handler offered all of MAX_HANDLER_GAS), refusals are caught before
sending, and a node without eth_createAccessList or a limit too low gets the estimate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from web3 import AsyncWeb3
from web3.exceptions import ContractLogicError, Web3RPCError

import attest
from adapters.evm import deploy as evm_deploy
from adapters.evm import gateway as evm_gateway
from adapters.evm.devnet import AnvilProcess
from adapters.evm.tx import GAS_MULTIPLIER
from adapters.evm.gateway import DeliveryRejected, EvmAdapter, batch_gas_limit, deliver_batch_data, \
    delivery_gas_limit, deploy_gateway, deploy_recording_receiver
from attest.bn254 import hash_to_g1_hint
from relay.batch import Batch
from relay.config import EvmChain
from relay.envelope import Envelope, address_to_bytes32
from relay.interfaces import SignedBatch, SignedDelivery
from relay.protocol import MessageKind
from tests.support import evm

pytestmark = pytest.mark.e2e

DOMAIN = 31337
REMOTE = 424242
EPOCH = 1
MAX_PAYLOAD = 512  # contracts/evm/src/lib/Envelope.sol MAX_PAYLOAD_LEN


@dataclass
class Setup:
    node: AnvilProcess
    w3: AsyncWeb3
    shares: list[attest.KeyShare]
    gateway: str
    recording: str
    noop: str

    def adapter(self, key_index: int = 1) -> EvmAdapter:
        chain = EvmChain(kind="evm", domain=DOMAIN, chain_id=DOMAIN, rpc_urls=[self.node.rpc_url], ws_urls=[],
                         confirmations=0, contracts={"Gateway": self.gateway})
        return EvmAdapter("evm", chain, self.node.private_keys[key_index], poll_interval=0.1)

    def delivery(self, nonce: int, receiver: str, payload: bytes, signers: tuple[int, ...] = (1, 2, 3)
                 ) -> SignedDelivery:
        envelope = Envelope(MessageKind.TASK_REQUEST, nonce, REMOTE, b"\x00" * 12 + b"\x5e" * 20, DOMAIN,
                            address_to_bytes32(receiver), payload)
        digest = envelope.digest(EPOCH)
        signature = attest.combine_signatures([attest.partial_sign(self.shares[i - 1], digest) for i in signers])
        return SignedDelivery(envelope=envelope, epoch=EPOCH, signature=signature)

    def batch(self, first_nonce: int, receivers: list[str], payload: bytes = b"x" * 64) -> SignedBatch:
        envelopes = [Envelope(MessageKind.TASK_REQUEST, first_nonce + i, REMOTE, b"\x00" * 12 + b"\x5e" * 20, DOMAIN,
                              address_to_bytes32(receiver), payload) for i, receiver in enumerate(receivers)]
        batch = Batch.of(envelopes)
        digest = batch.digest(EPOCH)
        return SignedBatch(batch, EPOCH, attest.combine_signatures([attest.partial_sign(s, digest)
                                                                    for s in self.shares[:3]]))

    def contract(self, name: str, address: str) -> Any:
        return evm_deploy.contract(self.w3, name, address)

    async def status(self, message_id: bytes) -> int:
        return await self.contract("Gateway", self.gateway).functions.deliveryStatus(message_id).call()

    async def receipt(self, adapter: EvmAdapter, tx: str) -> Any:
        return await adapter._wait_receipt(tx, 20)


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    async with evm.anvil_with_committee(DOMAIN, EPOCH) as anvil:
        gateway = await deploy_gateway(anvil.w3, anvil.deployer, anvil.verifier, DOMAIN, fee=0)
        recording = await deploy_recording_receiver(anvil.w3, anvil.deployer, gateway)
        noop = await evm_deploy.deploy(anvil.w3, anvil.deployer, "NoopReceiver")
        yield Setup(anvil.node, anvil.w3, anvil.shares, gateway, recording, noop)


def _hinted_call(setup: Setup, delivery: SignedDelivery) -> Any:
    gateway = setup.contract("Gateway", setup.gateway)
    k, y, y_sqrt = hash_to_g1_hint(delivery.envelope.digest(EPOCH))
    return gateway.functions.deliverWithHint(delivery.envelope.encode(), EPOCH, delivery.signature, k, y, y_sqrt)


async def _handler_limits(setup: Setup) -> tuple[int, int]:
    gateway = setup.contract("Gateway", setup.gateway)
    return await gateway.functions.GAS_RESERVE().call(), await gateway.functions.MAX_HANDLER_GAS().call()


HANDLER_PAYLOAD = b"x" * 64  # the payload _burn_for measures with (RecordingReceiver stores it)


async def _burn_for(setup: Setup, handler_gas: int) -> int:
    """RecordingReceiver.setBurn iterations after which handleMessage (called by the gateway) of a
    HANDLER_PAYLOAD message uses about `handler_gas` (a little less: the estimates include the
    transaction's base cost), from two estimates of the handler alone."""
    receiver = setup.contract("RecordingReceiver", setup.recording)
    call = receiver.functions.handleMessage(b"\x01" * 32, REMOTE, b"\x02" * 32, 1, 0, HANDLER_PAYLOAD)

    async def used(burn: int) -> int:
        await evm_deploy.transact(setup.w3, setup.node.private_keys[0], receiver.functions.setBurn(burn))
        return await call.estimate_gas({"from": setup.gateway})

    low, high = await used(1_000), await used(3_000)
    per_iteration = (high - low) / 2_000
    return int(1_000 + (handler_gas - low) / per_iteration)


async def test_the_limit_covers_the_gateway_with_the_largest_envelope(setup: Setup) -> None:
    adapter = setup.adapter()
    reserve, most = await _handler_limits(setup)
    delivery = setup.delivery(1, setup.noop, b"\xff" * MAX_PAYLOAD)
    tx = await adapter.submit(delivery)
    receipt = await setup.receipt(adapter, tx)
    assert receipt["status"] == 1 and await setup.status(delivery.envelope.message_id) == 1
    sent = (await setup.w3.eth.get_transaction(tx))
    assert sent["gas"] == delivery_gas_limit(bytes(sent["input"]), reserve, most)
    # The gateway's own execution (a receiver that does nothing): what DELIVERY_EXECUTION_GAS bounds,
    # with at least a third to spare.
    own = receipt["gasUsed"] - 21_000 - 16 * len(bytes(sent["input"]))
    print(f"deliverWithHint of a {MAX_PAYLOAD}-byte payload to NoopReceiver: {receipt['gasUsed']} gas, "
          f"gateway execution <= {own}, limit {sent['gas']}")
    assert own * 1.5 < evm_gateway.DELIVERY_EXECUTION_GAS
    await adapter.close()


async def test_a_handler_gets_all_of_max_handler_gas_under_the_limit(setup: Setup) -> None:
    adapter = setup.adapter()
    receiver = setup.contract("RecordingReceiver", setup.recording)
    _, most = await _handler_limits(setup)
    # Needs a little less than MAX_HANDLER_GAS: handled, not starved into "failed".
    burn = await _burn_for(setup, most - 100_000)
    await evm_deploy.transact(setup.w3, setup.node.private_keys[0], receiver.functions.setBurn(burn))
    heavy = setup.delivery(2, setup.recording, HANDLER_PAYLOAD)
    receipt = await setup.receipt(adapter, await adapter.submit(heavy))
    assert receipt["status"] == 1 and await setup.status(heavy.envelope.message_id) == 1
    assert receipt["gasUsed"] > most - 100_000  # the handler really ran that long
    assert await receiver.functions.count().call() == 1
    # Needs more than MAX_HANDLER_GAS: recorded failed (retryable), as the gateway promises for a
    # handler that used all of it, never reverted for want of gas.
    burn = await _burn_for(setup, most + 200_000)
    await evm_deploy.transact(setup.w3, setup.node.private_keys[0], receiver.functions.setBurn(burn))
    too_heavy = setup.delivery(3, setup.recording, HANDLER_PAYLOAD)
    receipt = await setup.receipt(adapter, await adapter.submit(too_heavy))
    assert receipt["status"] == 1 and await setup.status(too_heavy.envelope.message_id) == 2
    await adapter.close()


async def test_a_limit_too_low_reverts_and_never_consumes_the_message(setup: Setup) -> None:
    """The attack a computed limit must survive: a relayer (ours with a wrong constant, or anyone)
    sends the delivery with too little gas for the handler. The gateway reverts; the message stays
    deliverable and is then delivered and handled."""
    receiver = setup.contract("RecordingReceiver", setup.recording)
    burn = await _burn_for(setup, 1_000_000)
    await evm_deploy.transact(setup.w3, setup.node.private_keys[0], receiver.functions.setBurn(burn))
    delivery = setup.delivery(4, setup.recording, HANDLER_PAYLOAD)
    for starved_gas in (400_000, 900_000):  # handler short by ~0.6M and by ~0.1M
        with pytest.raises(evm_deploy.TransactionReverted) as caught:
            await evm_deploy.transact(setup.w3, setup.node.private_keys[2], _hinted_call(setup, delivery),
                                      gas=starved_gas)
        assert caught.value.receipt is not None and caught.value.receipt["status"] == 0
        assert await setup.status(delivery.envelope.message_id) == 0  # not delivered, not failed
    adapter = setup.adapter()
    receipt = await setup.receipt(adapter, await adapter.submit(delivery))
    assert receipt["status"] == 1 and await setup.status(delivery.envelope.message_id) == 1
    assert await receiver.functions.count().call() == 1
    await adapter.close()


async def test_a_refused_delivery_is_caught_before_sending(setup: Setup) -> None:
    adapter = setup.adapter()
    address = adapter.account.address
    before = await setup.w3.eth.get_transaction_count(address)
    good = setup.delivery(5, setup.noop, b"signed")
    forged = SignedDelivery(envelope=setup.delivery(6, setup.noop, b"other").envelope, epoch=EPOCH,
                            signature=good.signature)  # another message's signature
    with pytest.raises(DeliveryRejected, match="InvalidSignature"):
        await adapter.submit(forged)
    assert await setup.w3.eth.get_transaction_count(address, "pending") == before  # nothing sent
    await setup.receipt(adapter, await adapter.submit(good))
    with pytest.raises(DeliveryRejected, match="AlreadyDelivered"):
        await adapter.submit(good)
    assert await setup.w3.eth.get_transaction_count(address, "pending") == before + 1
    await adapter.close()


async def test_a_computed_limit_too_low_falls_back_to_the_estimate(setup: Setup, monkeypatch) -> None:
    receiver = setup.contract("RecordingReceiver", setup.recording)
    burn = await _burn_for(setup, 1_000_000)
    await evm_deploy.transact(setup.w3, setup.node.private_keys[0], receiver.functions.setBurn(burn))
    _, most = await _handler_limits(setup)
    # A constant wrong by more than the handler's share: the handler would be starved.
    monkeypatch.setattr(evm_gateway, "DELIVERY_EXECUTION_GAS", -most + 200_000)
    adapter = setup.adapter()
    delivery = setup.delivery(7, setup.recording, HANDLER_PAYLOAD)
    tx = await adapter.submit(delivery)
    receipt = await setup.receipt(adapter, tx)
    assert receipt["status"] == 1 and await setup.status(delivery.envelope.message_id) == 1
    assert await receiver.functions.count().call() == 1
    sent = await setup.w3.eth.get_transaction(tx)
    assert sent["gas"] > receipt["gasUsed"]  # the estimate's limit, not the wrong one
    await adapter.close()


# --- batches (deliverBatch at batch_gas_limit of one eth_createAccessList) --------------------------


async def _measured(setup: Setup, adapter: EvmAdapter, signed: SignedBatch) -> int:
    """What the adapter measures a batch with: eth_createAccessList at the block's gas limit (30M on anvil)."""
    data = deliver_batch_data(setup.contract("Gateway", setup.gateway), signed.batch, signed.epoch, signed.signature)
    answer = evm.rpc(setup.node, "eth_createAccessList", {"from": adapter.account.address, "to": setup.gateway,
                                                          "data": data, "gas": hex(30_000_000)}, "latest")
    return int(answer["gasUsed"], 16)


async def _statuses(setup: Setup, signed: SignedBatch) -> list[int]:
    return [await setup.status(e.message_id) for e in signed.batch.envelopes]


async def test_a_batch_limit_offers_every_handler_all_of_max_handler_gas(setup: Setup) -> None:
    """The attack a batch limit must survive: a receiver that fails at once when handed less than it
    needs (here MAX_HANDLER_GAS less a little) without running out of gas. The gateway records a
    failure only when the handler was offered all of MAX_HANDLER_GAS, so a batch sent with too little
    gas reverts whole (InsufficientGasForHandler) and records nothing; eth_estimateGas (the lowest
    limit that does not revert) is then a limit at which every handler gets its share. Shown under a
    snapshot; the adapter's measured limit then delivers every handler."""
    reserve, most = await _handler_limits(setup)
    sensitive = await evm_deploy.deploy(setup.w3, setup.node.private_keys[0], "GasSensitiveReceiver", setup.gateway,
                                        most - 20_000, 200)
    receiver = setup.contract("RecordingReceiver", setup.recording)
    burn = await _burn_for(setup, 1_000_000)
    await evm_deploy.transact(setup.w3, setup.node.private_keys[0], receiver.functions.setBurn(burn))
    receivers = [setup.recording, sensitive, setup.recording, setup.recording, sensitive, setup.recording,
                 setup.recording, sensitive]
    signed = setup.batch(100, receivers)
    adapter = setup.adapter()
    measured = await _measured(setup, adapter, signed)

    call = setup.contract("Gateway", setup.gateway).functions.deliverBatch(
        signed.batch.root, EPOCH, signed.signature, [e.encode() for e in signed.batch.envelopes])
    estimate = int(evm.rpc(setup.node, "eth_estimateGas", {"from": adapter.account.address, "to": setup.gateway,
                                                             "data": call._encode_transaction_data()}), 16)
    # Starved (the last gasleft()-dependent handler would get ~1M instead of MAX_HANDLER_GAS and
    # revert at once): under the old rule it was recorded failed; now the whole batch reverts.
    starved_gas = estimate - 1_000_000
    with pytest.raises(evm_deploy.TransactionReverted) as caught:
        await evm_deploy.transact(setup.w3, setup.node.private_keys[2], call, gas=starved_gas)
    assert caught.value.receipt is not None and caught.value.receipt["status"] == 0
    assert "InsufficientGasForHandler" in str(caught.value)
    assert await _statuses(setup, signed) == [0] * 8  # nothing consumed, nothing recorded failed
    # eth_estimateGas x GAS_MULTIPLIER (how batches were sent before) now delivers every handler.
    snapshot = evm.rpc(setup.node, "evm_snapshot")
    estimated = await evm_deploy.transact(setup.w3, setup.node.private_keys[2], call,
                                          gas=int(estimate * GAS_MULTIPLIER))
    assert estimated["status"] == 1 and await _statuses(setup, signed) == [1] * 8
    assert evm.rpc(setup.node, "evm_revert", snapshot) is True
    assert await _statuses(setup, signed) == [0] * 8

    tx = (await adapter.submit_batch(signed, list(range(8))))[0]
    receipt = await setup.receipt(adapter, tx)
    assert receipt["status"] == 1
    assert await _statuses(setup, signed) == [1] * 8
    assert await setup.contract("GasSensitiveReceiver", sensitive).functions.handled().call() == 3
    assert await receiver.functions.count().call() == 5
    sent = await setup.w3.eth.get_transaction(tx)
    assert sent["gas"] == batch_gas_limit(measured, reserve, most)
    assert abs(receipt["gasUsed"] - measured) < 100_000  # the measured run is the run that was mined
    print(f"batch of 8 (5 x ~1M-gas handlers, 3 gas-sensitive): used {receipt['gasUsed']}, measured {measured}, "
          f"limit {sent['gas']}; eth_estimateGas {estimate} (x1.2 = {int(estimate * 1.2)})")
    await adapter.close()


async def test_a_batch_of_handlers_near_max_handler_gas_is_handled(setup: Setup) -> None:
    _, most = await _handler_limits(setup)
    receiver = setup.contract("RecordingReceiver", setup.recording)
    burn = await _burn_for(setup, most - 100_000)
    await evm_deploy.transact(setup.w3, setup.node.private_keys[0], receiver.functions.setBurn(burn))
    signed = setup.batch(200, [setup.recording] * 4)
    adapter = setup.adapter()
    receipt = await setup.receipt(adapter, (await adapter.submit_batch(signed, [0, 1, 2, 3]))[0])
    assert receipt["status"] == 1 and await _statuses(setup, signed) == [1] * 4
    assert receipt["gasUsed"] > 4 * (most - 100_000)
    assert await receiver.functions.count().call() == 4
    await adapter.close()


async def test_a_refused_batch_is_caught_before_sending(setup: Setup) -> None:
    adapter = setup.adapter()
    before = await setup.w3.eth.get_transaction_count(adapter.account.address)
    good = setup.batch(300, [setup.noop] * 3)
    forged = SignedBatch(setup.batch(310, [setup.noop] * 3).batch, EPOCH, good.signature)  # another root's
    with pytest.raises(DeliveryRejected, match="InvalidSignature"):
        await adapter.submit_batch(forged, [0, 1, 2])
    assert await setup.w3.eth.get_transaction_count(adapter.account.address, "pending") == before  # nothing sent
    receipt = await setup.receipt(adapter, (await adapter.submit_batch(good, [0, 1, 2]))[0])
    assert receipt["status"] == 1 and await _statuses(setup, good) == [1] * 3
    await adapter.close()


async def test_a_node_without_eth_create_access_list_gets_the_estimate(setup: Setup, monkeypatch) -> None:
    adapter = setup.adapter()
    asked = []

    async def refused(to: str, data: str, gas: int) -> int:
        asked.append(gas)
        raise Web3RPCError("the method eth_createAccessList does not exist/is not available",
                           rpc_response={"jsonrpc": "2.0", "id": 1,
                                         "error": {"code": -32601, "message": "Method not found"}})

    monkeypatch.setattr(adapter.tx, "access_list_gas", refused)
    for nonce in (400, 410):
        signed = setup.batch(nonce, [setup.recording] * 3)
        tx = (await adapter.submit_batch(signed, [0, 1, 2]))[0]
        receipt = await setup.receipt(adapter, tx)
        assert receipt["status"] == 1 and await _statuses(setup, signed) == [1] * 3
        sent = await setup.w3.eth.get_transaction(tx)
        assert receipt["gasUsed"] < sent["gas"] < receipt["gasUsed"] * 1.3  # the estimate x 1.2
    assert len(asked) == 1  # asked once: the node said it has no such method
    await adapter.close()


async def test_a_measured_batch_limit_too_low_falls_back_to_the_estimate(setup: Setup, monkeypatch) -> None:
    receiver = setup.contract("RecordingReceiver", setup.recording)
    burn = await _burn_for(setup, 1_000_000)
    await evm_deploy.transact(setup.w3, setup.node.private_keys[0], receiver.functions.setBurn(burn))
    # A rule wrong by more than the last handler's share: the preflight finds it starved.
    monkeypatch.setattr(evm_gateway, "batch_gas_limit", lambda measured, reserve, most: measured - 500_000)
    adapter = setup.adapter()
    signed = setup.batch(500, [setup.recording] * 3)
    measured = await _measured(setup, adapter, signed)
    tx = (await adapter.submit_batch(signed, [0, 1, 2]))[0]
    receipt = await setup.receipt(adapter, tx)
    assert receipt["status"] == 1 and await _statuses(setup, signed) == [1] * 3
    assert await receiver.functions.count().call() == 3
    sent = await setup.w3.eth.get_transaction(tx)
    assert sent["gas"] > measured > receipt["gasUsed"] - 100_000  # the estimate's limit, not the wrong one
    await adapter.close()


async def test_a_refusal_without_revert_data_is_explained_by_the_estimate(setup: Setup, monkeypatch) -> None:
    """geth answers a reverting eth_createAccessList with an `error` field and no revert data: the
    estimate then gives the reason. A passing node error (not "no such method") falls back this once."""
    adapter = setup.adapter()
    measure = adapter.tx.access_list_gas
    asked = []

    async def like_geth(to: str, data: str, gas: int) -> int:
        asked.append(data)
        try:
            return await measure(to, data, gas)
        except ContractLogicError:
            raise ContractLogicError("eth_createAccessList: execution reverted") from None

    monkeypatch.setattr(adapter.tx, "access_list_gas", like_geth)
    good = setup.batch(600, [setup.noop] * 2)
    forged = SignedBatch(setup.batch(610, [setup.noop] * 2).batch, EPOCH, good.signature)
    with pytest.raises(DeliveryRejected, match="InvalidSignature"):
        await adapter.submit_batch(forged, [0, 1])

    async def flaky(to: str, data: str, gas: int) -> int:
        asked.append(data)
        raise Web3RPCError("header not found", rpc_response={"jsonrpc": "2.0", "id": 1,
                                                             "error": {"code": -32000, "message": "header not found"}})

    monkeypatch.setattr(adapter.tx, "access_list_gas", flaky)
    receipt = await setup.receipt(adapter, (await adapter.submit_batch(good, [0, 1]))[0])
    assert receipt["status"] == 1 and await _statuses(setup, good) == [1] * 2
    monkeypatch.setattr(adapter.tx, "access_list_gas", like_geth)
    third = setup.batch(620, [setup.noop] * 2)
    receipt = await setup.receipt(adapter, (await adapter.submit_batch(third, [0, 1]))[0])
    assert receipt["status"] == 1 and await _statuses(setup, third) == [1] * 2
    assert len(asked) == 3  # still asked after the passing error
    await adapter.close()
