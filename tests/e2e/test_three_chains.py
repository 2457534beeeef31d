"""Three chains behind one committee and one relayer: two anvils ("evm", chain id and domain 31337,
and "evm2", 31338) and the Solana localnet server, with the same contracts deployed on both EVM
chains (`relay localnet up --evm-chains 2`). Real processes: 4 attesters (t = 3), one relayer, a
`relay worker` per serving chain, driven through the SDK. Nothing in the relayer, the attesters or
the SDK knows there are two EVM chains: that is the point."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from solders.keypair import Keypair

from relay.config import load_config
from relay.devstack import Stack, messaging_stack
from relay.interfaces import TaskState
from relay.sdk import TesseraClient
from relay.tasks.payloads import AttestationMethod, ProofKind
from relay.tasks.sentiment import SentimentExecutor

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """One stack for the module: starting three chains and seven processes is the slow part."""
    async with messaging_stack(tmp_path_factory.mktemp("three-chains"), evm_chains=2) as stack:
        await asyncio.gather(stack.start_worker("evm2"), stack.start_worker("solana"))
        yield stack


async def test_the_localnet_has_three_chains_with_their_own_domains(stack: Stack) -> None:
    config = load_config(stack.config_path)
    assert list(config.chains) == ["evm", "evm2", "solana"]
    assert [config.chains[name].domain for name in ("evm", "evm2")] == [31337, 31338]
    assert config.chains["evm"].rpc_urls != config.chains["evm2"].rpc_urls
    for name in ("evm", "evm2"):
        assert {"Gateway", "CommitteeVerifier", "RecordingReceiver", "TaskBoardV2"} <= set(config.chains[name].contracts)


async def test_the_localnet_deploys_no_v1_task_board(stack: Stack) -> None:
    """Task protocol v1 is retired (docs/TASKS.md "v1 retired"): no EVM chain of the localnet has a
    `TaskBoard` contract, the v2 board is the Gateway's flat-fee sender, and the source is gone."""
    from adapters.evm import deploy as evm_deploy
    from adapters.evm.taskboard import TASK_BOARD_V2
    from web3 import AsyncHTTPProvider, AsyncWeb3

    config = load_config(stack.config_path)
    assert not (evm_deploy.EVM_PROJECT / "src" / "TaskBoard.sol").exists()
    for name in ("evm", "evm2"):
        contracts = config.chains[name].contracts
        assert "TaskBoard" not in contracts and TASK_BOARD_V2 in contracts
        w3 = AsyncWeb3(AsyncHTTPProvider(config.chains[name].rpc_urls[0]))
        try:
            gateway = evm_deploy.contract(w3, "Gateway", contracts["Gateway"])
            assert await gateway.functions.flatFeeSender(contracts[TASK_BOARD_V2]).call()
        finally:
            await w3.provider.disconnect()


async def test_data_messages_between_every_pair_that_involves_evm2(stack: Stack) -> None:
    config = load_config(stack.config_path)

    def recording_receiver(chain: str) -> bytes:
        return config.chains[chain].parse_address(config.chains[chain].contracts["RecordingReceiver"])

    receiver_sol = bytes(Keypair().pubkey())
    routes = [("evm", "evm2", recording_receiver("evm2")), ("evm2", "evm", recording_receiver("evm")),
              ("evm2", "solana", receiver_sol), ("solana", "evm2", recording_receiver("evm2"))]
    async with TesseraClient.from_config(stack.config_path) as client:
        sent = [await client.send(src, dst, receiver, f"{src} -> {dst}".encode()) for src, dst, receiver in routes]
        for (src, dst, _), message in zip(routes, sent):
            assert message.envelope.src_domain == config.chains[src].domain
            assert message.envelope.dst_domain == config.chains[dst].domain
        delivered = await asyncio.gather(*(client.wait_delivered(message, timeout=120) for message in sent))
        assert [d.chain for d in delivered] == [dst for _, dst, _ in routes]
        assert all(d.tx for d in delivered)
        # Off-chain: the committee's signature over each message checks out, a forged one does not.
        for message in sent:
            epoch, signature = await client.committee_signature(message)
            assert client.verify(message.envelope, epoch, signature)
            assert not client.verify(message.envelope, epoch, bytes(signature[:-1]) + bytes([signature[-1] ^ 1]))


async def test_ai_tasks_between_the_evm_chains_and_between_evm2_and_solana(stack: Stack) -> None:
    tasks = [("evm", "evm2", "A great launch: customers love it.", 10**15),
             ("evm2", "solana", "The outage made everyone angry.", 10**15)]
    async with TesseraClient.from_config(stack.config_path) as client:
        handles = [await client.request_task(src=src, dst=dst, executor="sentiment", input=text, max_fee=fee)
                   for src, dst, text, fee in tasks]
        results = await asyncio.gather(*(handle.result(timeout=180) for handle in handles))
        for (src, dst, text, fee), handle, result in zip(tasks, handles, results):
            # The worker on dst ran the executor, the committee re-executed it, src's board paid.
            assert result.output == await SentimentExecutor().run(text.encode(), deadline=None)
            assert result.result.proof_kind is ProofKind.REEXECUTION
            assert result.method is AttestationMethod.REEXECUTION
            assert result.attestation.request_id == handle.request_id
            assert result.status.state is TaskState.COMPLETED and result.status.max_fee == fee
            assert result.status.price + result.status.refund == fee  # task protocol v2: price paid, rest back
            assert client.verify(result.attestation_envelope, result.epoch, result.signature)
        assert results[0].text.startswith('{"label":"positive"')
        assert results[1].text.startswith('{"label":"negative"')
