"""Attack on the measured batch gas limit (adapters/evm/gateway.py _batch_transaction, db7966e) on a
real anvil: an attacker's receiver in the same batch uses little gas in the relayer's
eth_createAccessList / preflight runs, then its state is flipped (a front-run transaction: anyone may
call RecordingReceiver.setBurn) so that on chain it burns almost all of MAX_HANDLER_GAS. The headroom
over the measured gas (5/16 G + MAX_HANDLER_GAS + GAS_RESERVE + margin) covers one handler using its
full share, not two: a gasleft()-dependent receiver after it is handed less than it needs, reverts at
once (so the gateway's InsufficientGasForHandler rule does not see it starved) and is recorded FAILED.

What holds (asserted): nothing is lost — a failed message is not final; re-running its handler
(retryFailed, what the relayer does for HANDLER_FAILED) delivers it with all the gas it needs. The same
outcome is open to anyone without any state flip, since deliveries are permissionless and the
committee's signatures public: a caller of deliver / deliverBatch chooses the gas limit. So "no
gasleft()-dependent receiver is recorded failed" is a property of the relayer's own deterministic
runs only, never a guarantee to receivers (docs/SECURITY.md)."""

from __future__ import annotations

import pytest

from adapters.evm import deploy as evm_deploy
from adapters.evm.gateway import batch_gas_limit
from tests.e2e.test_evm_gas_limits import Setup, _burn_for, _handler_limits, _statuses, setup  # noqa: F401

pytestmark = pytest.mark.e2e


async def test_a_receiver_flipped_after_the_measurement_gets_a_later_one_recorded_failed_but_retryable(
        setup: Setup) -> None:  # noqa: F811
    reserve, most = await _handler_limits(setup)
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
    assert receipt["status"] == 1 and limits and (await setup.w3.eth.get_transaction(tx))["gas"] == limits[0]
    assert limits[0] < batch_gas_limit(receipt["gasUsed"], reserve, most)  # the run mined was not the one measured
    # The attack: the victim's handler was handed too little and recorded failed (status 2).
    assert await _statuses(setup, signed) == [1, 2]
    assert await setup.contract("GasSensitiveReceiver", victim).functions.handled().call() == 0

    # What holds: failed is not final. Re-running the handler (the relayer's HANDLER_FAILED path)
    # delivers it, with the limit estimated for the victim alone.
    adapter.tx.transaction = built  # type: ignore[method-assign]
    retried = await setup.receipt(adapter, await adapter.retry_failed(signed.batch.envelopes[1]))
    assert retried["status"] == 1 and await _statuses(setup, signed) == [1, 1]
    assert await setup.contract("GasSensitiveReceiver", victim).functions.handled().call() == 1
    await adapter.close()
