"""Deploying a program through the upgradeable BPF loader (loader v3) with solana-py, then calling it.

The ELF is the SPL Memo program the server preloads (read back over RPC), deployed again at a new
address: the same sequence `solana program deploy` sends (buffer, writes, DeployWithMaxDataLen).
"""

from __future__ import annotations

import struct

import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed, Processed
from solana.rpc.models import TxOpts
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountParams, create_account
from solders.sysvar import CLOCK, RENT
from solders.transaction import VersionedTransaction

from adapters.solana_localnet.testing import running_solana_localnet

pytestmark = pytest.mark.e2e

LOADER_V3 = Pubkey.from_string("BPFLoaderUpgradeab1e11111111111111111111111")
SYSTEM = Pubkey.from_string("11111111111111111111111111111111")
MEMO = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
BUFFER_METADATA = 37
PROGRAM_SIZE = 36
PROGRAMDATA_METADATA = 45
CHUNK = 900


async def _send(client: AsyncClient, payer: Keypair, ixs: list[Instruction], *signers: Keypair) -> None:
    blockhash = (await client.get_latest_blockhash(Processed)).value.blockhash
    tx = VersionedTransaction(Message.new_with_blockhash(ixs, payer.pubkey(), blockhash), [payer, *signers])
    sig = (await client.send_transaction(tx, opts=TxOpts(preflight_commitment=Processed))).value
    status = (await client.confirm_transaction(sig, Confirmed, sleep_seconds=0.02)).value[0]
    assert status is not None and status.err is None, status


async def deploy(client: AsyncClient, payer: Keypair, elf: bytes) -> Pubkey:
    buffer, program = Keypair(), Keypair()
    buffer_size = BUFFER_METADATA + len(elf)
    rent = (await client.get_minimum_balance_for_rent_exemption(buffer_size)).value
    await _send(
        client,
        payer,
        [
            create_account(CreateAccountParams(
                from_pubkey=payer.pubkey(), to_pubkey=buffer.pubkey(), lamports=rent, space=buffer_size, owner=LOADER_V3
            )),
            Instruction(LOADER_V3, struct.pack("<I", 0), [AccountMeta(buffer.pubkey(), False, True), AccountMeta(payer.pubkey(), False, False)]),
        ],
        buffer,
    )
    for offset in range(0, len(elf), CHUNK):
        chunk = elf[offset : offset + CHUNK]
        data = struct.pack("<IIQ", 1, offset, len(chunk)) + chunk
        await _send(client, payer, [Instruction(LOADER_V3, data, [AccountMeta(buffer.pubkey(), False, True), AccountMeta(payer.pubkey(), True, False)])])
    programdata, _ = Pubkey.find_program_address([bytes(program.pubkey())], LOADER_V3)
    program_rent = (await client.get_minimum_balance_for_rent_exemption(PROGRAM_SIZE)).value
    deploy_ix = Instruction(
        LOADER_V3,
        struct.pack("<IQ", 2, len(elf) * 2),
        [
            AccountMeta(payer.pubkey(), True, True),
            AccountMeta(programdata, False, True),
            AccountMeta(program.pubkey(), False, True),
            AccountMeta(buffer.pubkey(), False, True),
            AccountMeta(RENT, False, False),
            AccountMeta(CLOCK, False, False),
            AccountMeta(SYSTEM, False, False),
            AccountMeta(payer.pubkey(), True, False),
        ],
    )
    await _send(
        client,
        payer,
        [
            create_account(CreateAccountParams(
                from_pubkey=payer.pubkey(), to_pubkey=program.pubkey(), lamports=program_rent, space=PROGRAM_SIZE, owner=LOADER_V3
            )),
            deploy_ix,
        ],
        program,
    )
    return program.pubkey()


async def test_deploy_through_upgradeable_loader_and_invoke() -> None:
    async with running_solana_localnet(slot_ms=50, finality_slots=3) as net, AsyncClient(net.rpc_url, Confirmed) as client:
        elf = (await client.get_account_info(MEMO)).value.data
        assert elf[:4] == b"\x7fELF"
        payer = Keypair()
        await client.confirm_transaction((await client.request_airdrop(payer.pubkey(), 50 * 10**9)).value, Confirmed, sleep_seconds=0.02)

        program_id = await deploy(client, payer, elf)

        account = (await client.get_account_info(program_id)).value
        assert account is not None and account.executable and account.owner == LOADER_V3
        # A validator makes a fresh deployment callable from the next slot on; confirm_transaction waited for it.
        blockhash = (await client.get_latest_blockhash(Processed)).value.blockhash
        call = Instruction(program_id, b"hello from a deployed program", [AccountMeta(payer.pubkey(), True, False)])
        tx = VersionedTransaction(Message.new_with_blockhash([call], payer.pubkey(), blockhash), [payer])
        sig = (await client.send_transaction(tx)).value
        await client.confirm_transaction(sig, Confirmed, sleep_seconds=0.02)
        got = (await client.get_transaction(sig, commitment=Confirmed)).value
        logs = got.transaction.meta.log_messages
        assert f"Program {program_id} success" in logs
        assert "Program log: hello from a deployed program" in logs


async def test_program_preloaded_from_the_command_line(tmp_path) -> None:
    from solders.litesvm import LiteSVM

    so_path = tmp_path / "memo.so"
    so_path.write_bytes(bytes(LiteSVM().get_account(MEMO).data))
    program_id = Keypair().pubkey()
    async with running_solana_localnet(slot_ms=50, finality_slots=3, programs=[(str(program_id), so_path)]) as net:
        async with AsyncClient(net.rpc_url, Confirmed) as client:
            payer = Keypair()
            await client.confirm_transaction((await client.request_airdrop(payer.pubkey(), 10**9)).value, Confirmed, sleep_seconds=0.02)
            blockhash = (await client.get_latest_blockhash(Processed)).value.blockhash
            call = Instruction(program_id, b"preloaded", [AccountMeta(payer.pubkey(), True, False)])
            tx = VersionedTransaction(Message.new_with_blockhash([call], payer.pubkey(), blockhash), [payer])
            sig = (await client.send_transaction(tx)).value
            await client.confirm_transaction(sig, Confirmed, sleep_seconds=0.02)
            logs = (await client.get_transaction(sig, commitment=Confirmed)).value.transaction.meta.log_messages
            assert "Program log: preloaded" in logs
