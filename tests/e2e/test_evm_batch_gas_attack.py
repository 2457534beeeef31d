"""Attack on the measured batch gas limit (adapters/evm/gateway.py _batch_transaction, db7966e) on a
real anvil: an attacker's receiver in the same batch uses little gas in the relayer's
eth_createAccessList / preflight runs, then its state is flipped (a front-run transaction: anyone may
call RecordingReceiver.setBurn) so that on chain it burns almost all of MAX_HANDLER_GAS. The headroom
over the measured gas (5/16 G + MAX_HANDLER_GAS + GAS_RESERVE + margin) covers one handler using its
full share, not two: a gasleft()-dependent receiver after it is handed less than it needs and reverts
at once, without running out of gas.

Before (757af58) the gateway recorded that victim FAILED: a caller-controlled input (the gas limit,
or a front-run shrinking it) decided a genuine message's outcome. Now the gateway records a handler
failure only if the handler was offered all of MAX_HANDLER_GAS; one that fails offered less reverts
the whole delivery (InsufficientGasForHandler). Asserted: the front-run batch reverts, nothing in it
is consumed or recorded failed, the relayer reports it REVERTED (so relay/pipeline.py sends its
members singly next, tests/unit/test_batch_revert_attack.py), and the single delivery of the victim,
with the limit computed for it alone, is handled. The same holds for anyone's deliver / deliverBatch
with any gas limit (contracts/evm/test/GatewayGasRule.t.sol)."""

from __future__ import annotations

import pytest

import attest
from adapters.evm import deploy as evm_deploy
from relay.interfaces import DeliveryState, SignedDelivery
from tests.e2e.test_evm_gas_limits import EPOCH, Setup, _burn_for, _handler_limits, _statuses, setup  # noqa: F401

pytestmark = pytest.mark.e2e


async def test_a_receiver_flipped_after_the_measurement_reverts_the_batch_and_the_victim_is_delivered_singly(
        setup: Setup) -> None:  # noqa: F811
    _, most = await _handler_limits(setup)
    victim = await evm_deploy.deploy(setup.w3, setup.node.private_keys[0], "GasSensitiveReceiver", setup.gateway,
                                     most - 20_000, 200)
    attacker = setup.contract("RecordingReceiver", setup.recording)
    heavy = await _burn_for(setup, most - 300_000)
    await evm_deploy.transact(setup.w3, setup.node.private_keys[3], attacker.functions.setBurn(0))
    signed = setup.batch(900, [setup.recording, victim])
    adapter = setup.adapter()
    built = adapter.tx.transaction
    limits: list[int] = []

    async def then_front_run(*args, **kwargs):
        tx = await built(*args, **kwargs)
        if kwargs.get("preflight"):  # measured and checked: now the attacker flips its receiver
            limits.append(tx["gas"])
            await evm_deploy.transact(setup.w3, setup.node.private_keys[3], attacker.functions.setBurn(heavy))
        return tx
    adapter.tx.transaction = then_front_run  # type: ignore[method-assign]

    tx = (await adapter.submit_batch(signed, [0, 1]))[0]
    receipt = await setup.receipt(adapter, tx)
    assert limits and (await setup.w3.eth.get_transaction(tx))["gas"] == limits[0]
    # The attack lands (the victim was handed less than MAX_HANDLER_GAS and reverted at once), but it
    # no longer records anything: the whole batch reverted, both messages still deliverable.
    assert receipt["status"] == 0
    assert await _statuses(setup, signed) == [0, 0]
    assert await setup.contract("GasSensitiveReceiver", victim).functions.handled().call() == 0
    assert await attacker.functions.count().call() == 0
    status = await adapter.delivery_status(tx, signed.batch.envelopes[1].message_id)
    assert status.state is DeliveryState.REVERTED and "InsufficientGasForHandler" in status.detail, status

    # What the relayer does next for a reverted batch's members (relay/pipeline.py): each goes the
    # single way, signed singly and sent with the limit computed for it alone. The victim is handled.
    adapter.tx.transaction = built  # type: ignore[method-assign]
    envelope = signed.batch.envelopes[1]
    single = SignedDelivery(envelope=envelope, epoch=EPOCH, signature=attest.combine_signatures(
        [attest.partial_sign(s, envelope.digest(EPOCH)) for s in setup.shares[:3]]))
    delivered = await setup.receipt(adapter, await adapter.submit(single))
    assert delivered["status"] == 1 and await _statuses(setup, signed) == [0, 1]
    assert await setup.contract("GasSensitiveReceiver", victim).functions.handled().call() == 1
    await adapter.close()
