"""Proof attestations end to end on real processes (anvil, the Solana localnet server, four attester
processes, a relayer process), without the task boards: a Solana user sends a TASK_REQUEST through
the plain gateway to an EVM EOA, the EOA answers with a TASK_RESULT through Gateway.send, and the
committee attests (or refuses) the result; the relayer delivers the attestation to Solana."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account

from adapters.evm.gateway import EvmAdapter
from adapters.evm.devnet import ANVIL_DEV_KEYS
from attest.committee import Committee
from relay.config import dump_config, load_config
from relay.devstack import messaging_stack
from relay.envelope import Envelope
from relay.protocol import MessageKind
from relay.sdk import SentMessage, TesseraClient
from relay.store import Stage, Store
from relay.tasks import ProofKind, TaskRequest, TaskResult
from relay.tasks.attestation import attestation_for
from relay.tasks.sentiment import SentimentExecutor
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WORKER_KEY = ANVIL_DEV_KEYS[5]  # the EOA that plays the worker's board on EVM
TEXT = b"The relay delivered every message on time. Brilliant work!"


async def _json(url: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
        async with session.get(url) as resp:
            return resp.status, await resp.json(content_type=None)


async def _all_signed(endpoints: list[str], message_id: bytes) -> bool:
    answers = await asyncio.gather(*(_json(f"{e}/v1/partials/0x{message_id.hex()}") for e in endpoints))
    return all(status == 200 for status, _ in answers)


async def _result_statuses(endpoints: list[str], result_id: bytes) -> list[dict]:
    answers = await asyncio.gather(*(_json(f"{e}/v1/task-results/0x{result_id.hex()}") for e in endpoints))
    return [body for _, body in answers]


async def _final_block_time(worker: EvmAdapter, tx: str) -> int:
    async def final() -> int | None:
        observations = await worker.reobserve(tx)
        return observations[0].block_time if observations else None

    return await wait_for(final, timeout=30)


async def _request_and_answer(client: TesseraClient, worker: EvmAdapter, endpoints: list[str], eoa: bytes,
                              wrong: bool) -> tuple[SentMessage, Envelope, str, Envelope]:
    """Solana user -> TASK_REQUEST -> EOA; then EOA -> TASK_RESULT -> user. Returns the request,
    the result envelope, its tx and the derived attestation."""
    request = await client.send("solana", "evm", eoa, TaskRequest("sentiment", 0, 2**40, input=TEXT).encode(),
                                kind=MessageKind.TASK_REQUEST)
    # The worker answers what it saw final; attesters must have seen the request too.
    await wait_for(lambda: _all_signed(endpoints, request.message_id), timeout=60)
    output = SentimentExecutor().analyse(TEXT)
    if wrong:
        output = output.replace(b'"label":"positive"', b'"label":"negative"')
        assert output != SentimentExecutor().analyse(TEXT)
    result = TaskResult.signed(Ed25519PrivateKey.generate(), request_id=request.message_id, executor="sentiment",
                               output=output, payout=eoa, proof_kind=ProofKind.REEXECUTION)
    result_env, tx = await worker.send_message(request.envelope.src_domain, request.envelope.src_sender,
                                               MessageKind.TASK_RESULT, result.encode())
    attestation = attestation_for(result_env, await _final_block_time(worker, tx))
    return request, result_env, tx, attestation


async def test_attesters_attest_a_right_result_and_refuse_a_wrong_one(tmp_path: Path) -> None:
    async with messaging_stack(tmp_path, relayer=False) as stack:
        config = load_config(stack.config_path)
        # Short backoff so a refused attestation reaches the dead letter within the test.
        relayer = config.relayer.model_copy(update={"retry_base_s": 0.3, "retry_cap_s": 1.0, "max_attempts": 10})
        dump_config(config.model_copy(update={"relayer": relayer}), stack.config_path)
        await stack.start_relayer()
        config = load_config(stack.config_path)
        committee = Committee.load(config.committee.file)
        endpoints = [m.endpoint.rstrip("/") for m in committee.members]
        eoa = bytes(12) + bytes.fromhex(Account.from_key(WORKER_KEY).address[2:])
        worker = EvmAdapter("evm", config.chains["evm"], WORKER_KEY)
        await worker.start()
        try:
            async with TesseraClient.from_config(stack.config_path) as client:
                # --- a right sentiment result: attested by re-execution, delivered to Solana ---
                request, result_env, tx, attestation = await _request_and_answer(client, worker, endpoints, eoa,
                                                                                 wrong=False)
                delivered = await client.wait_delivered(attestation, timeout=90)  # receipt PDA checked
                assert delivered.chain == "solana"
                print(f"\nattestation delivered {delivered.latency_s:.2f}s after its result was final on EVM")
                epoch, signature = await client.committee_signature(SentMessage(attestation, "committee", tx))
                assert client.verify(attestation, epoch, signature)
                statuses = await _result_statuses(endpoints, result_env.message_id)
                assert [s["status"] for s in statuses] == ["attested"] * 4
                assert {s["method"] for s in statuses} == {2}
                assert {s["attestation_id"] for s in statuses} == {"0x" + attestation.message_id.hex()}
                # The result itself travels too (to the user: it is the requester's board here).
                await client.wait_delivered(result_env, timeout=60)

                # --- a wrong sentiment output: every attester refuses, nothing is delivered ---
                _, bad_env, _, bad_attestation = await _request_and_answer(client, worker, endpoints, eoa, wrong=True)
                final_at = time.monotonic()

                async def all_refused() -> list[dict] | None:
                    found = await _result_statuses(endpoints, bad_env.message_id)
                    return found if all(s.get("status") == "refused" for s in found) else None

                refused = await wait_for(all_refused, timeout=60)
                print(f"all 4 attesters refused within {time.monotonic() - final_at:.2f}s of the result being final")
                assert all("re-execution gave different bytes" in s["reason"] for s in refused)
                status, body = await _json(f"{endpoints[0]}/v1/partials/0x{bad_attestation.message_id.hex()}")
                assert status == 403 and body["error"].startswith("refused: sentiment: re-execution")

                async def dead_reason() -> str | None:
                    store = await Store.open(config.relayer.db)
                    try:
                        record = await store.get(bad_attestation.message_id)
                    finally:
                        await store.close()
                    return record.reason if record is not None and record.stage is Stage.DEAD else None

                reason = await wait_for(dead_reason, timeout=60, interval=0.5)
                print(f"refused attestation dead in the relayer {time.monotonic() - final_at:.1f}s after the result")
                assert "refused by member 1: sentiment: re-execution gave different bytes" in reason
                assert "refused by member 4" in reason
                assert not await client.is_delivered(bad_attestation)
                # The operator sees why in `relay status`.
                shown = subprocess.run(
                    [sys.executable, "-m", "relay.cli", "status", "0x" + bad_attestation.message_id.hex()[:16],
                     "--config", str(stack.config_path)], capture_output=True, text=True, timeout=60)
                assert shown.returncode == 0, shown.stderr
                assert "dead" in shown.stdout and "re-execution gave different bytes" in shown.stdout
                # The wrong result itself is an ordinary message and still reaches the requester.
                await client.wait_delivered(bad_env, timeout=60)
        finally:
            await worker.close()


async def test_v2_verdicts_valid_and_refused_go_to_both_destinations_and_a_failed_handler_is_not_delivered(
        tmp_path: Path) -> None:
    """Task protocol v2 without the boards: a Solana user sends a TASK_REQUEST v2 to an EVM EOA, the EOA
    answers TASK_RESULT v2s (right, then wrong). Every attester signs one verdict per result, valid or
    refused (output_mismatch), in two envelopes; the relayer carries both: the one to the requester
    (the Solana user) is delivered, the one to the 'serving board' (the EOA, which has no code) fails
    in the gateway's handler (status 2) and is therefore never counted as delivered."""
    from relay.store import RetryReason
    from relay.tasks.attestation import verdicts_for
    from relay.tasks.payloads import RefusalReason, TaskRequestV2, TaskResultV2

    async with messaging_stack(tmp_path, relayer=False) as stack:
        config = load_config(stack.config_path)
        relayer = config.relayer.model_copy(update={"retry_base_s": 0.3, "retry_cap_s": 1.0, "max_attempts": 6})
        dump_config(config.model_copy(update={"relayer": relayer}), stack.config_path)
        await stack.start_relayer()
        config = load_config(stack.config_path)
        committee = Committee.load(config.committee.file)
        endpoints = [m.endpoint.rstrip("/") for m in committee.members]
        eoa = bytes(12) + bytes.fromhex(Account.from_key(WORKER_KEY).address[2:])
        worker = EvmAdapter("evm", config.chains["evm"], WORKER_KEY)
        await worker.start()
        try:
            async with TesseraClient.from_config(stack.config_path) as client:
                terms = TaskRequestV2("sentiment", max_fee=1000, deadline=2**40, auction_window=0, start_bps=10_000,
                                      claim_window=60, bond=0, refund_to=eoa, input=TEXT)
                request = await client.send("solana", "evm", eoa, terms.encode(), kind=MessageKind.TASK_REQUEST)
                await wait_for(lambda: _all_signed(endpoints, request.message_id), timeout=60)
                right = SentimentExecutor().analyse(TEXT)
                outcomes = {}
                for name, output in (("right", right), ("wrong", right.replace(b'"positive"', b'"negative"'))):
                    result = TaskResultV2.signed(Ed25519PrivateKey.generate(), request_id=request.message_id,
                                                 executor="sentiment", output=output, claimant=eoa, payout=eoa,
                                                 price=1000, proof_kind=ProofKind.REEXECUTION)
                    result_env, tx = await worker.send_message(request.envelope.src_domain,
                                                               request.envelope.src_sender, MessageKind.TASK_RESULT,
                                                               result.encode())
                    block_time = await _final_block_time(worker, tx)
                    outcomes[name] = (result_env, verdicts_for(
                        result_env, block_time, None if name == "right" else RefusalReason.OUTPUT_MISMATCH))

                for name, (result_env, verdicts) in outcomes.items():
                    async def signed(result_env=result_env) -> list[dict] | None:
                        found = await _result_statuses(endpoints, result_env.message_id)
                        return found if all(s.get("status") == "attested" for s in found) else None

                    statuses = await wait_for(signed, timeout=60)
                    assert {s["verdict"] for s in statuses} == {"valid" if name == "right" else "refused"}
                    assert {s["refusal_reason"] for s in statuses} == {None if name == "right" else "output_mismatch"}
                    assert [s["attestation_ids"] for s in statuses] == [
                        {"requester": "0x" + verdicts.requester.message_id.hex(),
                         "serving": "0x" + verdicts.serving.message_id.hex()}] * 4
                    # To the requester (the Solana user): delivered, with the committee's signature.
                    delivered = await client.wait_delivered(verdicts.requester, timeout=90)
                    assert delivered.chain == "solana"
                    epoch, signature = await client.committee_signature(verdicts.requester)
                    assert client.verify(verdicts.requester, epoch, signature)

                    # To the EOA: the gateway records a failed handler; the relayer retries, never "delivered".
                    async def handler_failed(verdicts=verdicts) -> str | None:
                        store = await Store.open(config.relayer.db)
                        try:
                            record = await store.get(verdicts.serving.message_id)
                        finally:
                            await store.close()
                        return (record.reason if record is not None and record.reason_code is RetryReason.HANDLER_FAILED
                                else None)

                    reason = await wait_for(handler_failed, timeout=60, interval=0.5)
                    assert "handler" in reason
                    assert not await client.is_delivered(verdicts.serving)
        finally:
            await worker.close()
