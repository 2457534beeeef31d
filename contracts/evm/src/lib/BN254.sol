// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

/// BN254 (alt_bn128) for Tessera's min-sig BLS: signatures in G1, committee keys in G2.
/// Normative description: docs/PROTOCOL.md and DESIGN.md "Wire protocol v1".
///
/// Every decoder rejects non-canonical coordinates (>= p), the point at infinity and points off
/// the curve, so one signature has exactly one accepted encoding. G1 has cofactor 1 (on-curve is
/// enough); G2 subgroup membership is enforced by the pairing precompile, which fails on points
/// outside the order-r subgroup, and by `requireInG2Subgroup` where a key is stored.
library BN254 {
    /// Base field modulus p.
    uint256 internal constant P = 21888242871839275222246405745257275088696311157297823662689037894645226208583;
    /// Group order r.
    uint256 internal constant R = 21888242871839275222246405745257275088548364400416034343698204186575808495617;
    /// (p + 1) / 4: p = 3 mod 4, so beta^((p+1)/4) is a square root of beta when one exists.
    uint256 internal constant SQRT_EXPONENT = 0xc19139cb84c680a6e14116da060561765e05aa45a1c72a34f082305b61f3f52;

    // Twist coefficient b' = 3 / (9 + u) of E': y^2 = x^3 + b' over Fp2.
    uint256 internal constant TWIST_B_RE = 19485874751759354771024239261021720505790618469301721065564631296452457478373;
    uint256 internal constant TWIST_B_IM = 266929791119991161246907387137283842545076965332900288569378510910307636690;

    // -G2 (the generator with y negated), EIP-197 order.
    uint256 internal constant NEG_G2_X_IM = 11559732032986387107991004021392285783925812861821192530917403151452391805634;
    uint256 internal constant NEG_G2_X_RE = 10857046999023057135944570762232829481370756359578518086990519993285655852781;
    uint256 internal constant NEG_G2_Y_IM = 17805874995975841540914202342111839520379459829704422454583296818431106115052;
    uint256 internal constant NEG_G2_Y_RE = 13392588948715843804641432497768002650278120570034223513918757245338268106653;

    /// Same bound as attest/ and the Solana program (k travels there as one byte); each try
    /// succeeds with probability 1/2, so this is never reached in practice.
    uint256 internal constant MAX_HASH_INCREMENTS = 255;

    uint256 internal constant G1_LEN = 64;
    uint256 internal constant G2_LEN = 128;

    struct G1Point {
        uint256 x;
        uint256 y;
    }

    /// Fp2 elements as a + b·u; fields named for the EIP-197 byte order x_im ‖ x_re ‖ y_im ‖ y_re.
    struct G2Point {
        uint256 xIm;
        uint256 xRe;
        uint256 yIm;
        uint256 yRe;
    }

    error BadPointLength(uint256 expected, uint256 actual);
    error CoordinateNotCanonical();
    error PointAtInfinity();
    error G1PointNotOnCurve();
    error G2PointNotOnCurve();
    error G2PointNotInSubgroup();
    error ModExpFailed();
    error HashToCurveFailed(bytes32 digest);
    // Hash-to-curve hint refusals, named as the Solana program's HINT_* errors.
    /// y or ySqrt is >= p: send the reduced value.
    error HintOutOfRange();
    /// (x0 + k, y) is not on the curve: recompute k and y from the digest (attest.hash_to_g1).
    error HintNotOnCurve(bytes32 digest, uint8 k);
    /// ySqrt^2 != y: y is not the principal root (or ySqrt is wrong); send y = beta^((p+1)/4)
    /// and ySqrt = y^((p+1)/4).
    error HintNotCanonical();
    error PairingFailed();
    error InvalidSignature();

    // --- decoding ------------------------------------------------------------------------

    function decodeG1(bytes memory data) internal pure returns (G1Point memory point) {
        if (data.length != G1_LEN) revert BadPointLength(G1_LEN, data.length);
        uint256 x;
        uint256 y;
        assembly ("memory-safe") {
            x := mload(add(data, 32))
            y := mload(add(data, 64))
        }
        point = G1Point(x, y);
        requireValidG1(point);
    }

    function decodeG1Calldata(bytes calldata data) internal pure returns (G1Point memory point) {
        if (data.length != G1_LEN) revert BadPointLength(G1_LEN, data.length);
        uint256 x;
        uint256 y;
        assembly ("memory-safe") {
            x := calldataload(data.offset)
            y := calldataload(add(data.offset, 32))
        }
        point = G1Point(x, y);
        requireValidG1(point);
    }

    function decodeG2(bytes memory data) internal pure returns (G2Point memory point) {
        if (data.length != G2_LEN) revert BadPointLength(G2_LEN, data.length);
        uint256 xIm;
        uint256 xRe;
        uint256 yIm;
        uint256 yRe;
        assembly ("memory-safe") {
            xIm := mload(add(data, 32))
            xRe := mload(add(data, 64))
            yIm := mload(add(data, 96))
            yRe := mload(add(data, 128))
        }
        point = G2Point(xIm, xRe, yIm, yRe);
        requireValidG2(point);
    }

    function decodeG2Calldata(bytes calldata data) internal pure returns (G2Point memory point) {
        if (data.length != G2_LEN) revert BadPointLength(G2_LEN, data.length);
        uint256 xIm;
        uint256 xRe;
        uint256 yIm;
        uint256 yRe;
        assembly ("memory-safe") {
            xIm := calldataload(data.offset)
            xRe := calldataload(add(data.offset, 32))
            yIm := calldataload(add(data.offset, 64))
            yRe := calldataload(add(data.offset, 96))
        }
        point = G2Point(xIm, xRe, yIm, yRe);
        requireValidG2(point);
    }

    function encodeG1(G1Point memory point) internal pure returns (bytes memory) {
        return abi.encodePacked(point.x, point.y);
    }

    function encodeG2(G2Point memory point) internal pure returns (bytes memory) {
        return abi.encodePacked(point.xIm, point.xRe, point.yIm, point.yRe);
    }

    // --- curve checks --------------------------------------------------------------------

    function requireValidG1(G1Point memory point) internal pure {
        if (point.x >= P || point.y >= P) revert CoordinateNotCanonical();
        if (point.x == 0 && point.y == 0) revert PointAtInfinity();
        if (!isOnG1Curve(point.x, point.y)) revert G1PointNotOnCurve();
    }

    function requireValidG2(G2Point memory point) internal pure {
        if (point.xIm >= P || point.xRe >= P || point.yIm >= P || point.yRe >= P) revert CoordinateNotCanonical();
        if ((point.xIm | point.xRe | point.yIm | point.yRe) == 0) revert PointAtInfinity();
        if (!isOnTwist(point)) revert G2PointNotOnCurve();
    }

    function isOnG1Curve(uint256 x, uint256 y) internal pure returns (bool) {
        return mulmod(y, y, P) == addmod(mulmod(mulmod(x, x, P), x, P), 3, P);
    }

    /// y^2 == x^3 + b' over Fp2 = Fp[u]/(u^2 + 1).
    function isOnTwist(G2Point memory point) internal pure returns (bool) {
        (uint256 x2Re, uint256 x2Im) = _fp2Mul(point.xRe, point.xIm, point.xRe, point.xIm);
        (uint256 x3Re, uint256 x3Im) = _fp2Mul(x2Re, x2Im, point.xRe, point.xIm);
        (uint256 y2Re, uint256 y2Im) = _fp2Mul(point.yRe, point.yIm, point.yRe, point.yIm);
        return y2Re == addmod(x3Re, TWIST_B_RE, P) && y2Im == addmod(x3Im, TWIST_B_IM, P);
    }

    /// A stored committee key must be usable: the pairing precompile rejects G2 points outside
    /// the order-r subgroup, so a one-pair pairing with the G1 generator is a subgroup test.
    function requireInG2Subgroup(G2Point memory point) internal view {
        uint256[6] memory input = [uint256(1), 2, point.xIm, point.xRe, point.yIm, point.yRe];
        bool ok;
        assembly ("memory-safe") {
            ok := staticcall(gas(), 0x08, input, 192, 0x00, 0x20)
        }
        if (!ok) revert G2PointNotInSubgroup();
    }

    function _fp2Mul(uint256 aRe, uint256 aIm, uint256 bRe, uint256 bIm) private pure returns (uint256, uint256) {
        // (a + b u)(c + d u) = (ac - bd) + (ad + bc) u, since u^2 = -1.
        uint256 re = addmod(mulmod(aRe, bRe, P), P - mulmod(aIm, bIm, P), P);
        uint256 im = addmod(mulmod(aRe, bIm, P), mulmod(aIm, bRe, P), P);
        return (re, im);
    }

    // --- hash to G1 ----------------------------------------------------------------------

    /// Try-and-increment (EigenLayer's BN254.hashToG1): x = digest mod p; while x^3 + 3 is not a
    /// square, x = x + 1. y is the principal root beta^((p+1)/4), never negated. k counts the
    /// increments (off-chain verifiers and the Solana program take it as a hint).
    function hashToG1(bytes32 digest) internal view returns (G1Point memory point, uint256 k) {
        uint256 x = uint256(digest) % P;
        for (;;) {
            uint256 beta = addmod(mulmod(mulmod(x, x, P), x, P), 3, P);
            uint256 y = _sqrtCandidate(beta);
            if (mulmod(y, y, P) == beta) return (G1Point(x, y), k);
            if (k == MAX_HASH_INCREMENTS) revert HashToCurveFailed(digest);
            x = addmod(x, 1, P);
            unchecked {
                ++k;
            }
        }
    }

    /// The same point as `hashToG1` for the k the hint names, checked without a modexp: the
    /// relayer passes k, y and a square root ySqrt of y. Checks: y, ySqrt < p; (x0 + k, y) on the
    /// curve; ySqrt^2 == y. As p = 3 mod 4, exactly one of y, -y is a square, and the principal
    /// root beta^((p+1)/4) is that one (its exponent is even), so a y with a square root is the
    /// root try-and-increment returns: a relayer cannot negate H (and sigma with it) to get a
    /// second accepted encoding.
    ///
    /// k is not proven minimal. Signers sign H for the first valid increment; a larger k gives
    /// another point H' whose signature sk*H' cannot be made from sk*H (CDH), so the pairing
    /// fails. k is one byte: landing on a point signed for another digest needs a digest within
    /// 255 below its x, about 2^246 keccak evaluations (DESIGN.md, contracts/solana/README.md).
    function hashToG1WithHint(bytes32 digest, uint8 k, uint256 y, uint256 ySqrt)
        internal
        pure
        returns (G1Point memory point)
    {
        if (y >= P || ySqrt >= P) revert HintOutOfRange();
        uint256 x = addmod(uint256(digest) % P, k, P);
        if (!isOnG1Curve(x, y)) revert HintNotOnCurve(digest, k);
        if (mulmod(ySqrt, ySqrt, P) != y) revert HintNotCanonical();
        return G1Point(x, y);
    }

    function _sqrtCandidate(uint256 beta) private view returns (uint256 y) {
        bool ok;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, 32) // base length
            mstore(add(m, 0x20), 32) // exponent length
            mstore(add(m, 0x40), 32) // modulus length
            mstore(add(m, 0x60), beta)
            mstore(add(m, 0x80), SQRT_EXPONENT)
            mstore(add(m, 0xa0), P)
            ok := staticcall(gas(), 0x05, m, 0xc0, m, 0x20)
            y := mload(m)
        }
        if (!ok) revert ModExpFailed();
    }

    // --- BLS -----------------------------------------------------------------------------

    /// e(sigma, -G2) · e(H, pk) == 1. Reverts when the precompile call itself fails (a point it
    /// refuses, or too little gas) so that a failure can never look like a verdict.
    function pairingCheck(G1Point memory sigma, G1Point memory h, G2Point memory pk) internal view returns (bool) {
        uint256[12] memory input = [
            sigma.x,
            sigma.y,
            NEG_G2_X_IM,
            NEG_G2_X_RE,
            NEG_G2_Y_IM,
            NEG_G2_Y_RE,
            h.x,
            h.y,
            pk.xIm,
            pk.xRe,
            pk.yIm,
            pk.yRe
        ];
        uint256[1] memory out;
        bool ok;
        assembly ("memory-safe") {
            ok := staticcall(gas(), 0x08, input, 384, out, 0x20)
        }
        if (!ok) revert PairingFailed();
        return out[0] == 1;
    }

    /// Reverts with InvalidSignature (or a decoding error) unless sigma signs digest under pk.
    function requireValidSignature(bytes32 digest, G2Point memory pk, G1Point memory sigma) internal view {
        (G1Point memory h,) = hashToG1(digest);
        requireValidSignatureOn(h, pk, sigma);
    }

    /// As requireValidSignature, for H already computed (hashToG1 or hashToG1WithHint).
    function requireValidSignatureOn(G1Point memory h, G2Point memory pk, G1Point memory sigma) internal view {
        if (!pairingCheck(sigma, h, pk)) revert InvalidSignature();
    }
}
