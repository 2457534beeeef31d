"""Every Solana localnet instance has a genesis hash of its own (getGenesisHash), although LiteSVM
starts every instance from the same blockhash: chain identity (relay/chainstate.py) tells one
localnet run from the next by it (tests/e2e/test_localnet_restart.py)."""

from __future__ import annotations

from solders.pubkey import Pubkey

from adapters.solana_localnet.ledger import Ledger, LedgerConfig
from adapters.solana_localnet.rpc import RpcMethods


async def test_two_ledgers_answer_different_genesis_hashes_and_one_keeps_its_own() -> None:
    first, second = Ledger(LedgerConfig(finality_slots=2)), Ledger(LedgerConfig(finality_slots=2))
    assert first.genesis_hash == second.genesis_hash  # LiteSVM's starting blockhash: the same every time
    rpc_first, rpc_second = RpcMethods(first, Pubkey.default()), RpcMethods(second, Pubkey.default())
    answer = await rpc_first.rpc_getGenesisHash([])
    assert answer != await rpc_second.rpc_getGenesisHash([])
    assert answer == await rpc_first.rpc_getGenesisHash([]) == str(first.genesis_config_hash)
