"""Committee rotation on a Solana chain: the program's committee account, and delivering a
COMMITTEE_ROTATION through RotateCommittee (relay/rotation.py, `relay committee rotate`)."""

from __future__ import annotations

from solana.rpc.commitment import Confirmed
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.sysvar import CLOCK as CLOCK_SYSVAR

from adapters.solana.program import (Attestation, CommitteeConfig, committee_address, describe_transaction_error,
                                     rotate_committee_ix)
from adapters.solana.rpc import SolanaRpc
from adapters.solana.tx import SolanaTransactor, TransactionRefused
from relay.config import SolanaChain
from relay.envelope import Envelope
from relay.errors import ConfigError
from relay.rotation import ChainCommittee, RotationError

ROTATE_CU_LIMIT = 400_000  # a pairing and the new key's G2 subgroup check (contracts/solana/README.md)
CLOCK_UNIX_TIMESTAMP_OFFSET = 32


class SolanaRotation:
    """Reads and rotates one chain's committee account, paying with `payer` (the operator's keypair)."""

    def __init__(self, name: str, chain: SolanaChain, payer: Keypair | None) -> None:
        if chain.program_id is None:
            raise ConfigError(f"chains.{name}.program_id is not set: the rotation goes to the program")
        self.name = name
        self.program_id = Pubkey.from_string(chain.program_id)
        self.rpc = SolanaRpc(name, chain.rpc_urls)
        self.tx = SolanaTransactor(self.rpc, payer, name=name, no_payer_hint=(
            f"chains.{name}.signer is not set: the rotation's fee payer is the chain's signer"))

    @property
    def receiver(self) -> bytes:
        return bytes(self.program_id)

    async def state(self) -> ChainCommittee:
        address = committee_address(self.program_id)[0]
        account = (await self.rpc.call("getAccountInfo", lambda c: c.get_account_info(address, commitment=Confirmed))).value
        if account is None:
            raise RotationError(f"{self.name}: the program has no committee account: it was never initialized")
        state = CommitteeConfig.decode(bytes(account.data))
        clock = (await self.rpc.call("getAccountInfo", lambda c: c.get_account_info(CLOCK_SYSVAR, commitment=Confirmed))).value
        now = int.from_bytes(bytes(clock.data)[CLOCK_UNIX_TIMESTAMP_OFFSET:CLOCK_UNIX_TIMESTAMP_OFFSET + 8], "little",
                             signed=True)
        return ChainCommittee(epoch=state.current_epoch, n=state.current_n, t=state.current_t,
                              group_key=state.current_key, previous_epoch=state.previous_epoch,
                              previous_valid_until=state.previous_valid_until, chain_time=now)

    async def rotate(self, envelope: Envelope, epoch: int, signature: bytes, timeout: float = 60.0) -> str:
        raw = envelope.encode()
        ix = rotate_committee_ix(self.program_id, Attestation.for_envelope(raw, epoch, signature), raw)
        try:
            sig = await self.tx.transact([ix], cu_limit=ROTATE_CU_LIMIT, commitment=Confirmed, timeout=timeout)
        except TransactionRefused as exc:
            raise RotationError(f"{self.name}: RotateCommittee refused: "
                                f"{describe_transaction_error(exc.err) if exc.err is not None else exc}") from None
        return str(sig)

    async def close(self) -> None:
        await self.rpc.close()
