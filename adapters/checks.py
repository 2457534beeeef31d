"""What every chain's `relay config check --online` shares (adapters/evm/checks.py,
adapters/solana/checks.py)."""

from __future__ import annotations

from attest.committee import Committee


def committee_problems(where: str, epoch: int, group_key: bytes, committee: Committee) -> list[str]:
    """Why the committee a chain holds (its current epoch and group key) is not the config's."""
    if group_key != committee.group_key:
        return [f"{where}: holds the group key of epoch {epoch} 0x{group_key.hex()[:16]}.., not the config's committee "
                f"(epoch {committee.epoch}, 0x{committee.group_key.hex()[:16]}..): point [committee] file at the "
                "committee this chain trusts, or rotate the chain's committee"]
    if epoch != committee.epoch:
        return [f"{where}: holds the config's group key under epoch {epoch}, the committee file says {committee.epoch}"]
    return []
