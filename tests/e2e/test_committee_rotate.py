"""`relay committee rotate` end to end on real processes (anvil, the Solana localnet server, 4
attesters, a relayer): the attesters refuse a rotation their operators did not approve and one to
another key; after the approved rotation (a short grace, on both chains' real clocks) a message
signed by the old committee still lands during the grace, one signed by the new committee lands, the
restarted daemons deliver under the new keys, and after the grace the old committee's signature is
refused on both chains."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w
from solders.keypair import Keypair

import attest
from adapters.registry import driver_for
from attest.committee import Committee
from attest.files import write_atomic
from attest.keystore import load_share_for, read_key_file, save_share
from relay.config import load_config
from relay.configfile import read_toml
from relay.devstack import messaging_stack
from relay.envelope import Envelope
from relay.interfaces import MessageStatus
from relay.protocol import MessageKind
from relay.rotation import RotationError, collect_rotation, rotation_envelope
from relay.sdk import TesseraClient
from tests.support.committee import sign_envelope
from tests.support.offnet import delivery_outcome

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

GRACE_S = 30  # long enough for the in-grace deliveries on a loaded 2-core machine


def _message(src_domain: int, dst_domain: int, receiver: bytes, text: bytes) -> Envelope:
    return Envelope(kind=MessageKind.DATA, nonce=int.from_bytes(os.urandom(4), "big"), src_domain=src_domain,
                    src_sender=os.urandom(32), dst_domain=dst_domain, dst_receiver=receiver, payload=text)


async def test_rotate_then_old_lands_in_grace_new_lands_old_refused_after(tmp_path: Path) -> None:
    async with messaging_stack(tmp_path) as stack:
        config = load_config(stack.config_path)
        old = Committee.load(config.committee.file)
        secret = read_key_file(config.committee.key_file)
        old_shares = [load_share_for(old, config.committee.share_path(i), secret) for i in old.indices]
        # The next committee: the same members at the same endpoints with new keys (in production from
        # `relay keys dkg`), each share encrypted like the old ones.
        new, new_shares = attest.deal(old.n, old.t, epoch=old.epoch + 1, endpoints=[m.endpoint for m in old.members])
        new_file = stack.state_dir / "committee-2.toml"
        new.save(new_file)
        for share in new_shares:
            save_share(stack.state_dir / "keys" / f"share-e2-{share.index}.json", share, secret, group_key=new.group_key)
        evm_name, sol_name = "evm", "solana"
        evm, sol = config.chains[evm_name], config.chains[sol_name]
        verifiers = {name: driver_for(name, chain).rotation() for name, chain in config.chains.items()}

        # Attack: nobody approved a next committee yet, so no attester signs a rotation.
        envelope = rotation_envelope(evm.domain, verifiers[evm_name].receiver, new, GRACE_S)
        with pytest.raises(RotationError, match="only 0 of the 3 signatures.*approves no next committee"):
            await collect_rotation(old, envelope)

        # The members' operators approve epoch 2 ([committee] next) and restart their attesters.
        data = read_toml(stack.config_path)
        data["committee"]["next"] = "committee-2.toml"
        data["committee"]["next_grace_s"] = GRACE_S
        write_atomic(stack.config_path, tomli_w.dumps(data), 0o644)
        for index in old.indices:
            stack.attesters[index].stop()
        await asyncio.gather(*(stack.start_attester(i) for i in old.indices))

        # Attack: a rotation to any other key (a rogue relayer, whoever reaches the port) is refused.
        rogue, _ = attest.deal(old.n, old.t, epoch=old.epoch + 1)
        with pytest.raises(RotationError, match=r"only 0 of the 3.*another committee \(3-of-4, key .*\) than the one this attester approves"):
            await collect_rotation(old, rotation_envelope(evm.domain, verifiers[evm_name].receiver, rogue, GRACE_S))

        # Attack: the approved committee with a longer grace (keeping the old key valid longer) is refused.
        with pytest.raises(RotationError, match=f"only 0 of the 3.*this attester approves {GRACE_S}s"):
            await collect_rotation(old, rotation_envelope(evm.domain, verifiers[evm_name].receiver, new, 30 * 24 * 3600))

        done = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "relay.cli", "committee", "rotate", "--config", str(stack.config_path),
            "--new-committee", str(new_file), "--new-share", "keys/share-e2-{index}.json", "--grace", str(GRACE_S)],
            capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr[-3000:]
        assert f"{evm_name}: epoch 1 -> 2" in done.stdout and f"{sol_name}: epoch 1 -> 2" in done.stdout
        states = {name: await v.state() for name, v in verifiers.items()}
        assert all((s.epoch, s.group_key, s.previous_epoch) == (2, new.group_key, 1) for s in states.values())
        rotated = load_config(stack.config_path).committee
        assert Committee.load(rotated.file).epoch == 2 and Committee.load(rotated.previous).epoch == 1
        assert rotated.previous_valid_until == min(s.previous_valid_until for s in states.values())
        assert rotated.next is None and rotated.next_grace_s is None and rotated.share_path(1).name == "share-e2-1.json"

        # During the grace: the old committee's signature lands on both chains, the new one's too.
        stack.relayers["main"].stop()  # its account sends the test's deliveries now
        adapters = {name: driver_for(name, chain).messaging() for name, chain in config.chains.items()}
        for adapter in adapters.values():
            await adapter.start()
        receivers = {evm_name: bytes(12) + bytes.fromhex(evm.contracts["RecordingReceiver"][2:]),
                     sol_name: bytes(Keypair().pubkey())}
        domains = {evm_name: evm.domain, sol_name: sol.domain}
        other = {evm_name: sol_name, sol_name: evm_name}
        expected_refusal = {evm_name: "EpochExpired", sol_name: "EPOCH_EXPIRED"}
        try:
            for name, adapter in adapters.items():
                by_old = _message(domains[other[name]], domains[name], receivers[name], b"old committee, in grace")
                by_new = _message(domains[other[name]], domains[name], receivers[name], b"new committee")
                assert time.time() < states[name].previous_valid_until - 2, "the grace ran out before the check"
                assert await delivery_outcome(adapter, by_old, 1, sign_envelope(old, old_shares, by_old)) == "delivered"
                assert await delivery_outcome(adapter, by_new, 2, sign_envelope(new, new_shares, by_new)) == "delivered"

            # The daemons restarted on the rewritten config sign and deliver under the new keys.
            for index in old.indices:
                stack.attesters[index].stop()
            await asyncio.gather(*(stack.start_attester(i) for i in old.indices))
            await stack.start_relayer()
            async with TesseraClient.from_config(stack.config_path) as client:
                sent = await client.send(evm_name, sol_name, receivers[sol_name], b"after the rotation")
                await client.wait_delivered(sent, timeout=90)
                epoch, signature = await client.committee_signature(sent)
                assert epoch == 2 and client.verify(sent.envelope, epoch, signature)

            # After the grace (each chain's own clock): the old committee's signature is refused on both.
            for name, verifier in verifiers.items():
                while (await verifier.state()).chain_time <= states[name].previous_valid_until:
                    await asyncio.sleep(0.5)
            for name, adapter in adapters.items():
                late = _message(domains[other[name]], domains[name], receivers[name], b"old committee, too late")
                outcome = await delivery_outcome(adapter, late, 1, sign_envelope(old, old_shares, late))
                # The verifier's own refusal: EVM CommitteeVerifier.EpochExpired, Solana EPOCH_EXPIRED.
                assert outcome.startswith(("refused: ", "reverted: ")) and expected_refusal[name] in outcome, outcome
                assert await adapter.message_status(late.message_id) is MessageStatus.NOT_DELIVERED
        finally:
            for adapter in adapters.values():
                await adapter.close()
            for verifier in verifiers.values():
                await verifier.close()
