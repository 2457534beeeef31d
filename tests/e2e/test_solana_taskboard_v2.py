"""Task protocol v2 on the real Solana localnet server, at the gateway adapter (what the relayer and
the attesters use): the envelopes RequestTask v2 and SubmitResult v2 send are observed from the task
and serve accounts (with the log lines gone, as when a padded transaction truncates them: attack 7),
and `SolanaAdapter.submit` gives v2 results and verdicts the accounts the program checks: a request
paid for on Solana settles (price to the payout, the rest back), a request served on Solana returns
the claimant's bond. The instructions come from adapters.solana.program's encoders."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey

import adapters.solana.gateway as solana_gateway
from adapters.solana.deploy import deploy_program, initialize_committee, initialize_gateway
from adapters.solana.gateway import SolanaAdapter
from adapters.solana.program import (ServeAccount, TaskAccountV2, claim_task_ix, request_task_v2_ix, serve_address,
                                     submit_result_v2_ix, task_v2_address, taskboard_address)
from adapters.solana.tx import SolanaTransactor
from adapters.solana_localnet.testing import RunningLocalnet, running_solana_localnet
from attest import Committee, KeyShare, combine, deal, partial_sign
from relay.config import SolanaChain
from relay.envelope import Envelope
from relay.interfaces import DeliveryState, Observation, SignedDelivery
from relay.protocol import COMMITTEE_DOMAIN, MessageKind
from relay.tasks.payloads import AttestationMethod, ProofVerdict, TaskRequestV2, TaskResultV2
from tests.support.solana import airdropped

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

DOMAIN = 903
EVM_DOMAIN = 31337
EVM_BOARD = b"\x00" * 12 + b"\xb0" * 20
MAX_FEE = 50_000_000  # lamports
BOND = 20_000_000


@dataclass
class Deployed:
    net: RunningLocalnet
    program_id: Pubkey
    committee: Committee
    shares: list[KeyShare]

    def chain(self) -> SolanaChain:
        return SolanaChain(kind="solana", domain=DOMAIN, rpc_urls=[self.net.rpc_url], ws_urls=[self.net.ws_url],
                           program_id=str(self.program_id), commitment="confirmed")

    def sign(self, envelope: Envelope) -> SignedDelivery:
        digest = envelope.digest(1)
        result = combine(self.committee, digest, [partial_sign(share, digest) for share in self.shares[:3]])
        assert result.ok, result.reason
        return SignedDelivery(envelope, 1, result.signature)

    @property
    def board(self) -> bytes:
        return bytes(taskboard_address(self.program_id))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def deployed() -> AsyncIterator[Deployed]:
    async with running_solana_localnet(slot_ms=30, finality_slots=8) as net:
        async with AsyncClient(net.rpc_url, commitment=Confirmed) as client:
            admin = await airdropped(client, 100 * 10**9)
            program_id = await asyncio.wait_for(deploy_program(client, admin), 60)
            committee, shares = deal(4, 3, epoch=1)
            await initialize_committee(client, admin, program_id, domain=DOMAIN, epoch=1, n=4, t=3,
                                       group_key=committee.group_key)
            await initialize_gateway(client, admin, program_id)
        yield Deployed(net, program_id, committee, shares)


@pytest_asyncio.fixture(loop_scope="module")
async def client(deployed: Deployed) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(deployed.net.rpc_url, commitment=Confirmed) as c:
        yield c


@pytest_asyncio.fixture(loop_scope="module")
async def adapter(deployed: Deployed, client: AsyncClient) -> AsyncIterator[SolanaAdapter]:
    relayer = SolanaAdapter("solana", deployed.chain(), await airdropped(client), poll_interval=0.05)
    yield relayer
    await relayer.close()


async def _send(adapter: SolanaAdapter, signer: Keypair, instructions: Sequence[Instruction]) -> str:
    transactor = SolanaTransactor(adapter.rpc, signer, name="test")
    return str(await transactor.transact(instructions, cu_limit=200_000, commitment=Confirmed))


async def _delivered(adapter: SolanaAdapter, deployed: Deployed, envelope: Envelope) -> str:
    tx = await adapter.submit(deployed.sign(envelope))
    deadline = time.monotonic() + 20
    while True:
        status = await adapter.delivery_status(tx)
        if status.state is not DeliveryState.PENDING:
            assert status.state is DeliveryState.CONFIRMED, status
            return tx
        assert time.monotonic() < deadline, "delivery not final in time"
        await asyncio.sleep(0.05)


async def _observed(adapter: SolanaAdapter, tx: str) -> list[Observation]:
    deadline = time.monotonic() + 20
    while not (observations := await adapter.reobserve(tx)):
        assert time.monotonic() < deadline, "the transaction's envelopes were not observed in time"
        await asyncio.sleep(0.05)
    return observations


def _verdicts(result_env: Envelope, result: TaskResultV2, submitted_at: int) -> tuple[Envelope, Envelope]:
    """The committee's one verdict in its two envelopes: to the requester's board, to the serving board."""
    payload = ProofVerdict.for_result(result, result_env.message_id, AttestationMethod.REEXECUTION,
                                      submitted_at).encode()

    def to(domain: int, receiver: bytes) -> Envelope:
        return Envelope(MessageKind.PROOF_ATTESTATION, 0, COMMITTEE_DOMAIN, bytes(32), domain, receiver, payload)

    return to(result_env.dst_domain, result_env.dst_receiver), to(result_env.src_domain, result_env.src_sender)


async def _balance(client: AsyncClient, key: Pubkey) -> int:
    return (await client.get_balance(key, Confirmed)).value


@pytest.fixture
def no_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every log line gone, as when a padded transaction gets its logs truncated (attack 7)."""
    monkeypatch.setattr(solana_gateway, "sent_envelopes_of", lambda logs, program_id: [])


async def test_a_task_paid_on_solana_is_observed_from_its_account_and_settles(
        deployed: Deployed, client: AsyncClient, adapter: SolanaAdapter, no_logs: None) -> None:
    requester, payout = await airdropped(client), await airdropped(client)
    now = int(time.time())
    request = TaskRequestV2("echo", MAX_FEE, now + 600, auction_window=0, start_bps=10_000, claim_window=60,
                            bond=10**12, refund_to=b"\x00" * 12 + b"\xaa" * 20, input=b"hello")
    task_nonce = random.getrandbits(64)
    ix = request_task_v2_ix(deployed.program_id, requester.pubkey(), task_nonce=task_nonce, dst_domain=EVM_DOMAIN,
                            worker_board=EVM_BOARD, payload=request.encode())
    tx = await _send(adapter, requester, [ix])
    # With no log line, the request envelope comes from the task account.
    (observation,) = await _observed(adapter, tx)
    sent = observation.envelope
    task_key = task_v2_address(deployed.program_id, requester.pubkey(), task_nonce)
    task = TaskAccountV2.decode(await adapter.rpc.account_data(task_key, deployed.program_id, Confirmed))
    assert sent.encode() == task.envelope and sent.message_id == task.request_id
    assert (sent.kind, sent.src_sender, sent.dst_domain, sent.dst_receiver, sent.payload) == (
        MessageKind.TASK_REQUEST, deployed.board, EVM_DOMAIN, EVM_BOARD, request.encode())
    # The watcher yields it too, in order with the cursor after it.
    async def first() -> Observation:
        async for seen in adapter.watch(None):
            if seen.envelope.message_id == sent.message_id:
                return seen
        raise AssertionError("watch ended")
    assert (await asyncio.wait_for(first(), 30)).source_tx == tx
    found = await adapter.task_v2(sent.message_id)
    assert found is not None and found[0] == task_key

    # The worker on the other chain answers; its result and the verdict (verdict first: attack 1).
    price = MAX_FEE // 2
    result = TaskResultV2.signed(Ed25519PrivateKey.generate(), request_id=sent.message_id, executor="echo",
                                 output=b"hello", claimant=b"\x00" * 12 + b"\xcc" * 20,
                                 payout=bytes(payout.pubkey()), price=price)
    result_env = Envelope(MessageKind.TASK_RESULT, 7, EVM_DOMAIN, EVM_BOARD, DOMAIN, deployed.board, result.encode())
    to_requester, _to_server = _verdicts(result_env, result, now + 5)
    payout_before, requester_before = await _balance(client, payout.pubkey()), await _balance(
        client, requester.pubkey())
    await _delivered(adapter, deployed, to_requester)
    kept = TaskAccountV2.decode(await adapter.rpc.account_data(task_key, deployed.program_id, Confirmed))
    assert kept.pending_result_id == result_env.message_id and kept.result_id is None
    await _delivered(adapter, deployed, result_env)
    settled = TaskAccountV2.decode(await adapter.rpc.account_data(task_key, deployed.program_id, Confirmed))
    assert settled.result_id == result_env.message_id and (settled.price, settled.refund) == (price, MAX_FEE - price)
    assert await _balance(client, payout.pubkey()) - payout_before == price
    assert await _balance(client, requester.pubkey()) - requester_before == MAX_FEE - price


async def test_a_task_served_on_solana_result_observed_from_the_serve_account_and_bond_returned(
        deployed: Deployed, client: AsyncClient, adapter: SolanaAdapter, no_logs: None) -> None:
    claimant, refund_to = await airdropped(client), await airdropped(client)
    request = TaskRequestV2("echo", 10**15, int(time.time()) + 600, auction_window=0, start_bps=10_000,
                            claim_window=120, bond=BOND, refund_to=bytes(refund_to.pubkey()), input=b"hi")
    request_env = Envelope(MessageKind.TASK_REQUEST, 11, EVM_DOMAIN, EVM_BOARD, DOMAIN, deployed.board,
                           request.encode())
    await _delivered(adapter, deployed, request_env)
    request_id = request_env.message_id
    payout = b"\x00" * 12 + b"\xee" * 20
    await _send(adapter, claimant, [claim_task_ix(deployed.program_id, claimant.pubkey(), request_id, payout=payout,
                                                  refund_to=refund_to.pubkey())])
    serve_key = serve_address(deployed.program_id, request_id)
    serve = ServeAccount.decode(await adapter.rpc.account_data(serve_key, deployed.program_id, Confirmed))
    assert serve.claimant == claimant.pubkey() and serve.price == 10**15 and serve.bond_held == BOND
    result = TaskResultV2.signed(Ed25519PrivateKey.generate(), request_id=request_id, executor="echo",
                                 output=b"hi", claimant=bytes(claimant.pubkey()), payout=payout, price=serve.price)
    tx = await _send(adapter, claimant, [submit_result_v2_ix(deployed.program_id, claimant.pubkey(), request_id,
                                                             result.encode())])
    # With no log line, the result envelope comes from the serve account.
    (observation,) = await _observed(adapter, tx)
    result_env = observation.envelope
    answered = ServeAccount.decode(await adapter.rpc.account_data(serve_key, deployed.program_id, Confirmed))
    assert result_env.encode() == answered.result_envelope and result_env.message_id == answered.result_id
    assert (result_env.dst_domain, result_env.dst_receiver, result_env.payload) == (EVM_DOMAIN, EVM_BOARD,
                                                                                  result.encode())
    _to_requester, to_server = _verdicts(result_env, result, answered.submitted_at)
    before = await _balance(client, claimant.pubkey())
    await _delivered(adapter, deployed, to_server)  # the adapter adds serve account, claimant, refund_to
    assert await _balance(client, claimant.pubkey()) - before == BOND
    closed = ServeAccount.decode(await adapter.rpc.account_data(serve_key, deployed.program_id, Confirmed))
    assert closed.state == 4 and closed.bond_held == 0


async def test_retry_failed_says_there_is_nothing_to_retry_on_solana(deployed: Deployed,
                                                                   adapter: SolanaAdapter) -> None:
    envelope = Envelope(MessageKind.DATA, 1, EVM_DOMAIN, EVM_BOARD, DOMAIN, deployed.board, b"x")
    with pytest.raises(Exception, match="nothing to retry"):
        await adapter.retry_failed(envelope)
