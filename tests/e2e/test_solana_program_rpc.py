"""The Tessera Solana program over JSON-RPC: deployed with solana-py's AsyncClient through the
upgradeable loader into the real Solana localnet server (a subprocess), then called the same way."""

from __future__ import annotations

import asyncio
import time

import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.keypair import Keypair
from solders.system_program import CreateAccountParams, create_account

from adapters.solana_localnet.testing import running_solana_localnet
from adapters.solana.deploy import (
    TransactionFailedError,
    deploy_program,
    initialize_committee,
    load_program_bytes,
    send_instructions,
)
from adapters.solana.program import (
    BPF_LOADER_UPGRADEABLE_ID,
    CommitteeConfig,
    committee_address,
    probe_ix,
    programdata_address,
    rotate_committee_ix,
    verify_signature_ix,
)
from relay.envelope import keccak256
from tests.support.solana import ALICE, BOB, DOMAIN, airdropped, envelope, rotation_envelope

pytestmark = pytest.mark.e2e


async def test_deploy_probe_and_verify_over_rpc() -> None:
    async with running_solana_localnet(slot_ms=50) as net:
        async with AsyncClient(net.rpc_url, commitment=Confirmed) as client:
            payer = await airdropped(client, 50 * 10**9)
            program_id = await asyncio.wait_for(deploy_program(client, payer, load_program_bytes()), 60)

            program = (await client.get_account_info(program_id)).value
            assert program.owner == BPF_LOADER_UPGRADEABLE_ID and program.executable
            programdata = (await client.get_account_info(programdata_address(program_id))).value
            assert bytes(programdata.data)[13:45] == bytes(payer.pubkey())

            target = Keypair()
            rent = (await client.get_minimum_balance_for_rent_exemption(32)).value
            payload = b"probe over json-rpc"
            create = create_account(CreateAccountParams(
                from_pubkey=payer.pubkey(), to_pubkey=target.pubkey(), lamports=rent, space=32, owner=program_id,
            ))
            await send_instructions(client, payer, [create, probe_ix(program_id, target.pubkey(), payload)], [target])
            account = (await client.get_account_info(target.pubkey())).value
            assert bytes(account.data) == keccak256(payload)

            config = await initialize_committee(
                client, payer, program_id, domain=DOMAIN, epoch=1, n=3, t=2, group_key=ALICE.group_key
            )
            assert config == committee_address(program_id)[0]
            decoded = CommitteeConfig.decode(bytes((await client.get_account_info(config)).value.data))
            assert (decoded.current_epoch, decoded.current_key, decoded.domain) == (1, ALICE.group_key, DOMAIN)

            raw = envelope(payload=b"over rpc")
            await send_instructions(client, payer, [verify_signature_ix(program_id, ALICE.attest(raw, 1), raw)])
            with pytest.raises(TransactionFailedError, match="0x36"):  # SIGNATURE_INVALID
                await send_instructions(client, payer, [verify_signature_ix(program_id, BOB.attest(raw, 1), raw)])

            rotation = rotation_envelope(2, BOB.group_key, grace=3600, receiver=program_id)
            await send_instructions(client, payer, [rotate_committee_ix(program_id, ALICE.attest(rotation, 1), rotation)])
            decoded = CommitteeConfig.decode(bytes((await client.get_account_info(config)).value.data))
            assert (decoded.current_epoch, decoded.current_key, decoded.previous_epoch) == (2, BOB.group_key, 1)
            # the localnet's clock is wall time: the grace period runs from the rotation's block time
            assert abs(decoded.previous_valid_until - 3600 - time.time()) < 120
            await send_instructions(client, payer, [verify_signature_ix(program_id, BOB.attest(raw, 2), raw)])
            await send_instructions(client, payer, [verify_signature_ix(program_id, ALICE.attest(raw, 1), raw)])
