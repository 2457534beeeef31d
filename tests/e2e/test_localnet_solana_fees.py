"""The Solana side of a localnet sets its fees as the EVM side does (adapters/solana/devnet.py): the
relayer's account (the payer that signs deliveries) is the fee beneficiary, and no destination cost is
posted, so sends stay free and need no fresh prices; `relay fees claim` then works for the relayer."""

from __future__ import annotations

from pathlib import Path

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.pubkey import Pubkey

import pytest

from adapters.solana.devnet import deploy_devnet
from adapters.solana.deployment import load_or_create_keypair
from adapters.solana.fee_program import vault_address, vault_beneficiary
from adapters.solana.program import outbox_address
from adapters.solana_localnet.testing import running_solana_localnet
from attest.dealer import deal
from relay.config import SolanaChain

pytestmark = pytest.mark.e2e


async def test_the_localnet_makes_the_relayer_the_solana_fee_beneficiary(tmp_path: Path) -> None:
    committee, _ = deal(4, 3, 1)
    async with running_solana_localnet(slot_ms=100, finality_slots=4) as solana:
        chain = SolanaChain(kind="solana", domain=13375, rpc_urls=[solana.rpc_url], ws_urls=[solana.ws_url],
                            commitment="confirmed")
        deployment = await deploy_devnet("solana", chain, tmp_path / "keys", committee, {})
        payer = load_or_create_keypair(tmp_path / "keys" / "solana-payer.json").pubkey()
        assert deployment.chain.signer.file.name == "solana-payer.json"  # the relayer signs with the payer
        assert deployment.deployed["fee_beneficiary"] == str(payer)
        program_id = Pubkey.from_string(deployment.deployed["program_id"])
        async with AsyncClient(solana.rpc_url, commitment=Confirmed) as client:
            vault = (await client.get_account_info(vault_address(program_id))).value
            outbox = (await client.get_account_info(outbox_address(program_id)[0])).value
        assert vault is not None and vault.owner == program_id
        assert vault_beneficiary(bytes(vault.data)) == payer
        assert bytes(outbox.data)[10] == 0  # no fee config posted: sends are not charged (fees_required false)
