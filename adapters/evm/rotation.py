"""Committee rotation on an EVM chain: the CommitteeVerifier's committees, and delivering a
COMMITTEE_ROTATION to its `rotate(envelope, signature)` (relay/rotation.py, `relay committee rotate`)."""

from __future__ import annotations

from eth_account import Account
from eth_utils import to_checksum_address
from web3 import AsyncWeb3
from web3.exceptions import ContractLogicError

from adapters.evm.deploy import load_artifact
from adapters.evm import rpc
from adapters.evm.rpc import decode_revert, endpoint_pool, revert_data
from adapters.evm.tx import TxManager
from relay.config import EvmChain
from relay.envelope import Envelope
from relay.errors import ConfigError
from relay.rotation import ChainCommittee, RotationError

VERIFIER = "CommitteeVerifier"


def verifier_address(name: str, chain: EvmChain) -> str:
    address = chain.contracts.get(VERIFIER)
    if address is None:
        raise ConfigError(f"chains.{name}.contracts has no {VERIFIER}: a rotation is delivered to the chain's verifier; "
                          "add its address (`relay deploy` writes it)")
    return to_checksum_address(address)


class EvmRotation:
    """Reads and rotates one chain's CommitteeVerifier, sending from `key` (the operator's account)."""

    def __init__(self, name: str, chain: EvmChain, key: str | None, timeout: float = 10.0) -> None:
        self.name = name
        self.address = verifier_address(name, chain)
        self.pool = endpoint_pool(name, chain.rpc_urls, timeout=timeout, chain_id=chain.chain_id)
        self.tx = TxManager(self.pool.call, Account.from_key(key) if key else None, name=name)
        self.abi = load_artifact(VERIFIER).abi
        self._contract = AsyncWeb3().eth.contract(address=self.address, abi=self.abi)  # offline: encodes, decodes

    @property
    def receiver(self) -> bytes:
        return bytes(12) + bytes.fromhex(self.address[2:])

    async def _view(self, fn_name: str) -> tuple:
        fn = getattr(self._contract.functions, fn_name)()
        data = fn._encode_transaction_data()
        raw = await self.pool.call(f"eth_call {fn_name}", lambda w3: rpc.eth_call(w3, {"to": self.address, "data": data}))
        outputs = [o["type"] for o in next(e for e in self.abi if e.get("name") == fn_name)["outputs"]]
        return tuple(AsyncWeb3().codec.decode(outputs, bytes(raw)))

    async def state(self) -> ChainCommittee:
        epoch, n, t, key = await self._view("currentCommittee")
        prev_epoch, _, _, _, until = await self._view("previousCommittee")
        block = await self.pool.call("eth_getBlockByNumber(latest)", lambda w3: w3.eth.get_block("latest"))
        return ChainCommittee(epoch=int(epoch), n=int(n), t=int(t), group_key=bytes(key),
                              previous_epoch=int(prev_epoch) if until else None, previous_valid_until=int(until),
                              chain_time=int(block["timestamp"]))

    async def rotate(self, envelope: Envelope, epoch: int, signature: bytes, timeout: float = 60.0) -> str:
        # `epoch` is the outgoing committee's: the verifier checks the signature under its current epoch.
        data = self._contract.functions.rotate(envelope.encode(), signature)._encode_transaction_data()
        try:
            tx = await self.tx.transaction(self.address, data)
        except ContractLogicError as exc:
            raise RotationError(f"{self.name}: CommitteeVerifier.rotate refused: {decode_revert(self.abi, revert_data(exc))}") from None
        mined = await self.tx.wait(await self.tx.send(tx), timeout)
        if mined.receipt["status"] != 1:
            raise RotationError(f"{self.name}: the rotation transaction {mined.tx_hash} reverted")
        return mined.tx_hash

    async def close(self) -> None:
        for client in self.pool.clients:
            await client.provider.disconnect()
