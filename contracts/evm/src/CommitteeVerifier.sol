// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {BN254} from "./lib/BN254.sol";
import {Envelope} from "./lib/Envelope.sol";

/// Checks that the Tessera attester committee signed a message, and follows committee rotations.
///
/// Verification functions revert (custom errors) instead of returning false: a view that returns
/// false when the pairing precompile runs out of gas makes eth_estimateGas settle on a gas limit
/// too low for the success path.
contract CommitteeVerifier {
    using BN254 for BN254.G2Point;

    /// One storage slot per committee: verification is dominated by the pairing, so the key is
    /// kept in the code of a tiny data contract (one cold EXTCODECOPY) instead of four cold slots.
    struct Committee {
        uint32 epoch;
        /// Unix time until which the previous committee's signatures are still accepted
        /// (0 for the current committee).
        uint64 validUntil;
        address keyStore;
    }

    struct Size {
        uint16 n;
        uint16 t;
    }

    /// Tessera domain id of this chain: rotations addressed elsewhere are refused.
    uint32 public immutable domain;

    Committee internal _current;
    Committee internal _previous;
    Size internal _currentSize;
    Size internal _previousSize;

    event CommitteeRotated(
        uint32 indexed previousEpoch, uint32 indexed newEpoch, uint16 n, uint16 t, bytes groupKey, uint64 previousValidUntil
    );

    error UnknownEpoch(uint32 epoch, uint32 currentEpoch);
    error EpochExpired(uint32 epoch, uint64 validUntil);
    error NotARotation(uint8 kind);
    error RotationNotFromCommittee(uint32 srcDomain, bytes32 srcSender);
    error WrongDestination(uint32 dstDomain, bytes32 dstReceiver);
    error NonConsecutiveEpoch(uint32 newEpoch, uint32 currentEpoch);
    error BadRotationPayload(uint256 length);
    error BadThreshold(uint16 n, uint16 t);
    error KeyStoreFailed();

    constructor(uint32 domain_, uint32 epoch, uint16 n, uint16 t, bytes memory groupKey) {
        domain = domain_;
        _install(epoch, n, t, groupKey);
    }

    // --- verification --------------------------------------------------------------------

    /// Reverts unless `signature` is the committee of `epoch`'s signature of `envelope`.
    /// Returns the message id, which receivers use to refuse a second delivery.
    function verify(bytes calldata envelope, uint32 epoch, bytes calldata signature)
        external
        view
        returns (bytes32 messageId)
    {
        messageId = keccak256(envelope);
        _verify(Envelope.digest(epoch, messageId), _keyFor(epoch), signature);
    }

    function verifyDigest(bytes32 digest, uint32 epoch, bytes calldata signature) external view {
        _verify(digest, _keyFor(epoch), signature);
    }

    /// `verify` with the hash to G1 given as a hint (k, y, ySqrt; see BN254.hashToG1WithHint):
    /// no modexp on-chain. Accepts exactly what `verify` accepts when the hint is the one
    /// try-and-increment gives (attest.hash_to_g1); any other hint reverts (Hint* errors, or
    /// InvalidSignature for a valid point of a non-minimal k).
    function verifyWithHint(
        bytes calldata envelope,
        uint32 epoch,
        bytes calldata signature,
        uint8 k,
        uint256 y,
        uint256 ySqrt
    ) external view returns (bytes32 messageId) {
        messageId = keccak256(envelope);
        _verifyWithHint(Envelope.digest(epoch, messageId), _keyFor(epoch), signature, k, y, ySqrt);
    }

    function verifyDigestWithHint(
        bytes32 digest,
        uint32 epoch,
        bytes calldata signature,
        uint8 k,
        uint256 y,
        uint256 ySqrt
    ) external view {
        _verifyWithHint(digest, _keyFor(epoch), signature, k, y, ySqrt);
    }

    /// Verification under an explicit key: lets off-chain tools check a signature against the
    /// chain's own precompiles without a committee being installed.
    function verifyDigestWithKey(bytes32 digest, bytes calldata groupKey, bytes calldata signature) external view {
        _verify(digest, BN254.decodeG2Calldata(groupKey), signature);
    }

    function hashToG1(bytes32 digest) external view returns (uint256 x, uint256 y, uint256 k) {
        (BN254.G1Point memory h, uint256 increments) = BN254.hashToG1(digest);
        return (h.x, h.y, increments);
    }

    // --- committee -----------------------------------------------------------------------

    /// Installs committee epoch E+1 from a COMMITTEE_ROTATION envelope signed by committee E.
    /// The outgoing key stays valid for the grace period the rotation names.
    function rotate(bytes calldata envelope, bytes calldata signature) external {
        Envelope.Message memory m = Envelope.decode(envelope);
        if (m.kind != Envelope.KIND_COMMITTEE_ROTATION) revert NotARotation(m.kind);
        // Chain gateways stamp their own (non-zero) domain on what users send, so a rotation that
        // claims a chain as its source was written by a user, not by the committee: never apply it,
        // even if the committee signed it as an ordinary message.
        if (m.srcDomain != Envelope.COMMITTEE_DOMAIN || m.srcSender != bytes32(0)) {
            revert RotationNotFromCommittee(m.srcDomain, m.srcSender);
        }
        if (m.dstDomain != domain || m.dstReceiver != bytes32(uint256(uint160(address(this))))) {
            revert WrongDestination(m.dstDomain, m.dstReceiver);
        }
        Committee memory outgoing = _current;
        _verify(Envelope.digest(outgoing.epoch, keccak256(envelope)), _loadKey(outgoing.keyStore), signature);

        (uint32 newEpoch, uint16 n, uint16 t, bytes memory groupKey, uint32 graceSeconds) = _decodeRotation(m.payload);
        if (newEpoch != outgoing.epoch + 1) revert NonConsecutiveEpoch(newEpoch, outgoing.epoch);

        outgoing.validUntil = uint64(block.timestamp) + graceSeconds;
        _previous = outgoing;
        _previousSize = _currentSize;
        _install(newEpoch, n, t, groupKey);
        emit CommitteeRotated(outgoing.epoch, newEpoch, n, t, groupKey, outgoing.validUntil);
    }

    function currentEpoch() external view returns (uint32) {
        return _current.epoch;
    }

    function currentCommittee() external view returns (uint32 epoch, uint16 n, uint16 t, bytes memory groupKey) {
        Committee memory c = _current;
        return (c.epoch, _currentSize.n, _currentSize.t, BN254.encodeG2(_loadKey(c.keyStore)));
    }

    /// The outgoing committee and the end of its grace period (all zero before the first rotation).
    function previousCommittee()
        external
        view
        returns (uint32 epoch, uint16 n, uint16 t, bytes memory groupKey, uint64 validUntil)
    {
        Committee memory c = _previous;
        if (c.keyStore == address(0)) return (0, 0, 0, new bytes(128), 0);
        return (c.epoch, _previousSize.n, _previousSize.t, BN254.encodeG2(_loadKey(c.keyStore)), c.validUntil);
    }

    // --- internals -----------------------------------------------------------------------

    function _verify(bytes32 digest, BN254.G2Point memory groupKey, bytes calldata signature) private view {
        BN254.requireValidSignature(digest, groupKey, BN254.decodeG1Calldata(signature));
    }

    function _verifyWithHint(
        bytes32 digest,
        BN254.G2Point memory groupKey,
        bytes calldata signature,
        uint8 k,
        uint256 y,
        uint256 ySqrt
    ) private view {
        BN254.G1Point memory sigma = BN254.decodeG1Calldata(signature);
        BN254.requireValidSignatureOn(BN254.hashToG1WithHint(digest, k, y, ySqrt), groupKey, sigma);
    }

    function _keyFor(uint32 epoch) private view returns (BN254.G2Point memory) {
        Committee memory current = _current;
        if (epoch == current.epoch) return _loadKey(current.keyStore);
        Committee memory previous = _previous;
        // Before the first rotation the previous slot is empty, so every other epoch is unknown.
        if (previous.keyStore != address(0) && epoch == previous.epoch) {
            if (block.timestamp > previous.validUntil) revert EpochExpired(epoch, previous.validUntil);
            return _loadKey(previous.keyStore);
        }
        revert UnknownEpoch(epoch, current.epoch);
    }

    function _install(uint32 epoch, uint16 n, uint16 t, bytes memory groupKey) private {
        if (t == 0 || t > n) revert BadThreshold(n, t);
        BN254.G2Point memory key = BN254.decodeG2(groupKey);
        // A key outside the subgroup would make every later verification fail: refuse it now.
        // Keys are checked once here, so verification reads them back without re-checking.
        key.requireInG2Subgroup();
        _current = Committee(epoch, 0, _storeKey(groupKey));
        _currentSize = Size(n, t);
    }

    /// Deploys a contract whose code is 0x00 (STOP, so it cannot be called into) ‖ key.
    function _storeKey(bytes memory groupKey) private returns (address store) {
        // PUSH1 0x81 DUP1 PUSH1 0x0b PUSH1 0 CODECOPY PUSH1 0 RETURN: returns the 129 bytes after it.
        bytes memory init = abi.encodePacked(hex"608180600b6000396000f300", groupKey);
        assembly ("memory-safe") {
            store := create(0, add(init, 32), mload(init))
        }
        if (store == address(0)) revert KeyStoreFailed();
    }

    function _loadKey(address store) private view returns (BN254.G2Point memory key) {
        assembly ("memory-safe") {
            extcodecopy(store, key, 1, 128)
        }
    }

    function _decodeRotation(bytes memory payload)
        private
        pure
        returns (uint32 newEpoch, uint16 n, uint16 t, bytes memory groupKey, uint32 graceSeconds)
    {
        // new_epoch u32 ‖ n u16 ‖ t u16 ‖ group_key (128) ‖ grace_seconds u32
        if (payload.length != 140) revert BadRotationPayload(payload.length);
        uint256 head;
        uint256 tail;
        groupKey = new bytes(128);
        assembly ("memory-safe") {
            head := mload(add(payload, 32))
            mcopy(add(groupKey, 32), add(payload, 40), 128)
            tail := mload(add(payload, 168))
        }
        newEpoch = uint32(head >> 224);
        n = uint16(head >> 208);
        t = uint16(head >> 192);
        graceSeconds = uint32(tail >> 224);
    }
}
