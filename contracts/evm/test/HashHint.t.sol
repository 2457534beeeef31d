// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {Test} from "./utils/Test.sol";
import {BN254} from "../src/lib/BN254.sol";
import {Envelope} from "../src/lib/Envelope.sol";
import {CommitteeVerifier} from "../src/CommitteeVerifier.sol";

/// The library as CommitteeVerifier uses it, under an explicit key (the vectors carry keys that a
/// verifier's constructor would refuse).
contract HintHarness {
    function hashToG1(bytes32 digest) external view returns (BN254.G1Point memory h, uint256 k) {
        return BN254.hashToG1(digest);
    }

    function hashToG1WithHint(bytes32 digest, uint8 k, uint256 y, uint256 ySqrt)
        external
        pure
        returns (BN254.G1Point memory)
    {
        return BN254.hashToG1WithHint(digest, k, y, ySqrt);
    }

    function verifyWithHint(bytes32 digest, bytes calldata key, bytes calldata sig, uint8 k, uint256 y, uint256 ySqrt)
        external
        view
    {
        BN254.G1Point memory sigma = BN254.decodeG1Calldata(sig);
        BN254.requireValidSignatureOn(BN254.hashToG1WithHint(digest, k, y, ySqrt), BN254.decodeG2Calldata(key), sigma);
    }

    function pairingCheck(BN254.G1Point memory sigma, BN254.G1Point memory h, bytes calldata key)
        external
        view
        returns (bool)
    {
        return BN254.pairingCheck(sigma, h, BN254.decodeG2Calldata(key));
    }
}

/// The hinted hash to G1 (k, y, ySqrt from the relayer) against try-and-increment, the shared
/// vectors, and every way a relayer could bend a hint.
contract HashHintTest is Test {
    string internal constant BLS_VECTORS = "../../tests/vectors/bls_bn254.json";
    uint256 internal constant P = BN254.P;

    HintHarness internal harness;
    CommitteeVerifier internal verifier;
    string internal fixture;
    bytes internal key1;
    bytes internal message;
    bytes internal sig1;
    bytes32 internal digest1;

    struct Hint {
        uint8 k;
        uint256 y;
        uint256 ySqrt;
    }

    function setUp() public {
        harness = new HintHarness();
        fixture = vm.readFile("test/fixtures/rotation.json");
        key1 = vm.parseJsonBytes(fixture, ".keys.1");
        verifier = new CommitteeVerifier(31337, 1, 4, 3, key1);
        message = vm.parseJsonBytes(fixture, ".message.envelope");
        sig1 = vm.parseJsonBytes(fixture, ".message.signature_epoch_1");
        digest1 = Envelope.digest(1, keccak256(message));
    }

    // --- the hint gives the try-and-increment point ------------------------------------------

    function testFuzz_hintFromTryAndIncrementIsAccepted(bytes32 digest) public view {
        (BN254.G1Point memory h, uint256 k) = harness.hashToG1(digest);
        Hint memory hint = _hintFor(h, k);
        BN254.G1Point memory hinted = harness.hashToG1WithHint(digest, hint.k, hint.y, hint.ySqrt);
        assertEq(hinted.x, h.x, "x");
        assertEq(hinted.y, h.y, "y");
    }

    function testFuzz_skippedIncrementsAreRefused(bytes32 digest) public {
        (BN254.G1Point memory h, uint256 k) = harness.hashToG1(digest);
        for (uint256 j = 0; j < k; j++) {
            // No y makes a non-residue x^3 + 3 a square; the honest y is as good a try as any.
            uint256 root = _sqrt(h.y); // before expectRevert, which watches the next call
            vm.expectRevert(abi.encodeWithSelector(BN254.HintNotOnCurve.selector, digest, uint8(j)));
            harness.hashToG1WithHint(digest, uint8(j), h.y, root);
        }
    }

    function test_blsVectorsWithHint() public view {
        string memory json = vm.readFile(BLS_VECTORS);
        uint256 n;
        uint256 valid;
        for (; vm.keyExistsJson(json, string.concat(".cases[", vm.toString(n), "]")); n++) {
            if (_checkBlsCase(json, n)) valid++;
        }
        assertTrue(n >= 20, "bls_bn254.json has fewer cases than expected");
        assertTrue(valid > 0 && valid < n, "vectors must hold both valid and invalid cases");
    }

    function _checkBlsCase(string memory json, uint256 i) internal view returns (bool expected) {
        string memory prefix = string.concat(".cases[", vm.toString(i), "].");
        string memory name = vm.parseJsonString(json, string.concat(prefix, "name"));
        bytes32 digest = vm.parseJsonBytes32(json, string.concat(prefix, "digest"));
        Hint memory hint = _vectorHint(json, prefix, digest, name);
        expected = vm.parseJsonBool(json, string.concat(prefix, "valid"));
        bool accepted = _acceptsWithHint(
            digest,
            vm.parseJsonBytes(json, string.concat(prefix, "group_key")),
            vm.parseJsonBytes(json, string.concat(prefix, "signature")),
            hint
        );
        assertTrue(accepted == expected, string.concat("hinted verdict differs: ", name));
    }

    /// The hint as a relayer builds it from the vector: k, y = H.y, ySqrt = y^((p+1)/4).
    function _vectorHint(string memory json, string memory prefix, bytes32 digest, string memory name)
        internal
        view
        returns (Hint memory hint)
    {
        bytes memory h = vm.parseJsonBytes(json, string.concat(prefix, "h"));
        (uint256 hx, uint256 hy) = abi.decode(h, (uint256, uint256));
        hint = _hintFor(BN254.G1Point(hx, hy), vm.parseJsonUint(json, string.concat(prefix, "k")));
        BN254.G1Point memory hinted = harness.hashToG1WithHint(digest, hint.k, hint.y, hint.ySqrt);
        assertEq(abi.encodePacked(hinted.x, hinted.y), h, string.concat("hinted point differs: ", name));
    }

    function _acceptsWithHint(bytes32 digest, bytes memory key, bytes memory sig, Hint memory hint)
        internal
        view
        returns (bool)
    {
        try harness.verifyWithHint(digest, key, sig, hint.k, hint.y, hint.ySqrt) {
            return true;
        } catch {
            return false;
        }
    }

    // --- CommitteeVerifier.verifyWithHint ------------------------------------------------------

    function test_verifyWithHintAcceptsWhatVerifyAccepts() public view {
        Hint memory hint = _honestHint(digest1);
        bytes32 id = verifier.verifyWithHint(message, 1, sig1, hint.k, hint.y, hint.ySqrt);
        assertEq(id, verifier.verify(message, 1, sig1), "same message id as verify");
        assertEq(id, keccak256(message), "message id");
        verifier.verifyDigestWithHint(digest1, 1, sig1, hint.k, hint.y, hint.ySqrt);
        // Either square root of y proves y is a square; ySqrt is not part of the point.
        verifier.verifyWithHint(message, 1, sig1, hint.k, hint.y, P - hint.ySqrt);
    }

    function test_wrongKRefused() public {
        Hint memory hint = _honestHint(digest1);
        assertTrue(hint.k >= 1, "the fixture message must need an increment");
        vm.expectRevert(abi.encodeWithSelector(BN254.HintNotOnCurve.selector, digest1, hint.k - 1));
        verifier.verifyWithHint(message, 1, sig1, hint.k - 1, hint.y, hint.ySqrt);
        vm.expectRevert(abi.encodeWithSelector(BN254.HintNotOnCurve.selector, digest1, hint.k + 1));
        verifier.verifyWithHint(message, 1, sig1, hint.k + 1, hint.y, hint.ySqrt);
        vm.expectRevert(abi.encodeWithSelector(BN254.HintNotOnCurve.selector, digest1, uint8(255)));
        verifier.verifyDigestWithHint(digest1, 1, sig1, 255, hint.y, hint.ySqrt);
    }

    /// A later increment that also lands on the curve is a well-formed hint, but of a point the
    /// committee never signed: the pairing refuses it (README, "hinted hash to G1").
    function test_nonMinimalKWithValidPointRefusedByPairing() public {
        Hint memory honest = _honestHint(digest1);
        Hint memory later = _nextValidHint(digest1, honest.k + 1);
        assertTrue(later.k > honest.k, "a later valid increment exists");
        harness.hashToG1WithHint(digest1, later.k, later.y, later.ySqrt); // the hint itself checks out
        vm.expectRevert(BN254.InvalidSignature.selector);
        verifier.verifyWithHint(message, 1, sig1, later.k, later.y, later.ySqrt);
    }

    /// The negation attack: e(-σ, -G2)·e(-H, PK) = 1 whenever e(σ, -G2)·e(H, PK) = 1, so (-σ, -y)
    /// would be a second accepted encoding of the same message. Only the principal-root proof
    /// (ySqrt² = y) stops it: -y is not a square, so no ySqrt exists.
    function test_negatedSignatureAndYRefused() public {
        Hint memory hint = _honestHint(digest1);
        (uint256 sx, uint256 sy) = abi.decode(sig1, (uint256, uint256));
        bytes memory negSig = abi.encodePacked(sx, P - sy);
        uint256 negY = P - hint.y;
        uint256 negYRoot = _sqrt(negY); // negY^((p+1)/4): its square is y, not -y
        BN254.G1Point memory negH = BN254.G1Point(addmod(uint256(digest1) % P, hint.k, P), negY);
        assertTrue(harness.pairingCheck(BN254.G1Point(sx, P - sy), negH, key1), "the pairing alone accepts (-sigma, -H)");

        vm.expectRevert(BN254.HintNotCanonical.selector);
        verifier.verifyWithHint(message, 1, negSig, hint.k, negY, negYRoot);
        vm.expectRevert(BN254.HintNotCanonical.selector);
        verifier.verifyWithHint(message, 1, negSig, hint.k, negY, hint.ySqrt);
        vm.expectRevert(BN254.HintNotCanonical.selector);
        verifier.verifyDigestWithHint(digest1, 1, negSig, hint.k, negY, negYRoot);
        // -y with the honest σ is refused the same way (it would fail the pairing anyway).
        vm.expectRevert(BN254.HintNotCanonical.selector);
        verifier.verifyWithHint(message, 1, sig1, hint.k, negY, negYRoot);
    }

    function test_badRootWitnessRefused() public {
        Hint memory hint = _honestHint(digest1);
        vm.expectRevert(BN254.HintNotCanonical.selector);
        verifier.verifyWithHint(message, 1, sig1, hint.k, hint.y, addmod(hint.ySqrt, 1, P));
        vm.expectRevert(BN254.HintNotCanonical.selector);
        verifier.verifyWithHint(message, 1, sig1, hint.k, hint.y, hint.y);
        vm.expectRevert(BN254.HintNotCanonical.selector);
        verifier.verifyWithHint(message, 1, sig1, hint.k, hint.y, 0);
    }

    function test_coordinatesAtOrAboveP() public {
        Hint memory hint = _honestHint(digest1);
        vm.expectRevert(BN254.HintOutOfRange.selector);
        verifier.verifyWithHint(message, 1, sig1, hint.k, hint.y + P, hint.ySqrt);
        vm.expectRevert(BN254.HintOutOfRange.selector);
        verifier.verifyWithHint(message, 1, sig1, hint.k, hint.y, hint.ySqrt + P);
        vm.expectRevert(BN254.HintOutOfRange.selector);
        verifier.verifyWithHint(message, 1, sig1, hint.k, P, hint.ySqrt);
        vm.expectRevert(BN254.HintOutOfRange.selector);
        verifier.verifyWithHint(message, 1, sig1, hint.k, hint.y, type(uint256).max);
    }

    function test_verifyWithHintRefusesWhatVerifyRefuses() public {
        Hint memory hint = _honestHint(digest1);
        vm.expectRevert(abi.encodeWithSelector(CommitteeVerifier.UnknownEpoch.selector, uint32(2), uint32(1)));
        verifier.verifyWithHint(message, 2, sig1, hint.k, hint.y, hint.ySqrt);
        // The epoch-2 signature of the same envelope: right hint for epoch 1, wrong signer.
        vm.expectRevert(BN254.InvalidSignature.selector);
        verifier.verifyWithHint(message, 1, vm.parseJsonBytes(fixture, ".message.signature_epoch_2"), hint.k, hint.y, hint.ySqrt);
        vm.expectRevert(BN254.PointAtInfinity.selector);
        verifier.verifyWithHint(message, 1, new bytes(64), hint.k, hint.y, hint.ySqrt);
        vm.expectRevert(abi.encodeWithSelector(BN254.BadPointLength.selector, 64, 65));
        verifier.verifyWithHint(message, 1, bytes.concat(sig1, hex"00"), hint.k, hint.y, hint.ySqrt);
        // A changed envelope has another digest, so the hint no longer fits it.
        bytes memory other = bytes.concat(message, hex"00");
        bytes32 otherDigest = Envelope.digest(1, keccak256(other));
        Hint memory otherHint = _honestHint(otherDigest);
        vm.expectRevert(BN254.InvalidSignature.selector);
        verifier.verifyWithHint(other, 1, sig1, otherHint.k, otherHint.y, otherHint.ySqrt);
    }

    /// Regression guard (whole transactions: bench/evm_verify_gas.py). The hinted call skips every
    /// modexp, so it must be cheaper than verify for any k.
    function test_verifyWithHintGas() public view {
        Hint memory hint = _honestHint(digest1);
        (bytes memory envelope, bytes memory sig) = (message, sig1); // keep storage reads out of the figures
        uint256 before = gasleft();
        verifier.verifyWithHint(envelope, 1, sig, hint.k, hint.y, hint.ySqrt);
        uint256 hinted = before - gasleft();
        assertTrue(hinted <= 128_000, string.concat("verifyWithHint call costs ", vm.toString(hinted), " gas"));
        // Both warm from here on, so the difference is the hash alone.
        before = gasleft();
        verifier.verifyWithHint(envelope, 1, sig, hint.k, hint.y, hint.ySqrt);
        hinted = before - gasleft();
        before = gasleft();
        verifier.verify(envelope, 1, sig);
        uint256 unhinted = before - gasleft();
        assertTrue(
            hinted + 3 * 4_000 < unhinted,
            string.concat("hinted ", vm.toString(hinted), " vs ", vm.toString(unhinted), ": must save the 3 modexps of k = 2")
        );
    }

    // --- helpers -------------------------------------------------------------------------

    function _honestHint(bytes32 digest) internal view returns (Hint memory) {
        (BN254.G1Point memory h, uint256 k) = harness.hashToG1(digest);
        return _hintFor(h, k);
    }

    function _hintFor(BN254.G1Point memory h, uint256 k) internal view returns (Hint memory hint) {
        uint256 root = _sqrt(h.y);
        assertEq(mulmod(root, root, P), h.y, "y is the principal root, so it has a square root");
        hint = Hint(uint8(k), h.y, root);
    }

    /// The first increment >= from whose x^3 + 3 is a square, with its principal root.
    function _nextValidHint(bytes32 digest, uint256 from) internal view returns (Hint memory) {
        for (uint256 j = from; j <= 255; j++) {
            uint256 x = addmod(uint256(digest) % P, j, P);
            uint256 beta = addmod(mulmod(mulmod(x, x, P), x, P), 3, P);
            uint256 y = _sqrt(beta);
            if (mulmod(y, y, P) == beta) return _hintFor(BN254.G1Point(x, y), j);
        }
        revert("no later valid increment");
    }

    function _sqrt(uint256 value) internal view returns (uint256) {
        bytes memory input = abi.encodePacked(uint256(32), uint256(32), uint256(32), value, BN254.SQRT_EXPONENT, P);
        (bool ok, bytes memory out) = address(5).staticcall(input);
        assertTrue(ok, "modexp");
        return abi.decode(out, (uint256));
    }
}
