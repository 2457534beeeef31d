/* BN254 (alt_bn128) min-sig BLS verification with a relayer-supplied hash-to-curve hint. */
#ifndef TESSERA_BN254_H
#define TESSERA_BN254_H

#include "tessera.h"

/* The relayer's hash-to-curve hint: k u8 | y (32, BE) | y_sqrt (32, BE) with y_sqrt^2 = y mod p. */
#define HINT_LEN (1 + 32 + 32)

/* Checks e(sigma, -G2) * e(H, pk) == 1 with H = (x, y), x = (uint256(digest) mod p) + k mod p and
 * y the principal square root of x^3 + 3. Returns 0 when valid, else an ERR_* code saying why not. */
u64 bls_verify_hinted(const u8 digest[32], const u8 hint[HINT_LEN], const u8 sigma[G1_LEN], const u8 pk[G2_LEN]);

/* 0 when (x, y) is a point of G1 (infinity excluded), else ERR_* */
u64 g1_check(const u8 point[G1_LEN], u64 err_not_on_curve);

/* 0 when the key is a point of G2, else ERR_KEY_INFINITY, ERR_KEY_OUT_OF_RANGE (a coordinate >= p)
 * or ERR_KEY_NOT_IN_SUBGROUP (off the twist or outside the order-r subgroup). For keys about to be
 * stored: one pairing. */
u64 g2_check(const u8 key[G2_LEN]);

#endif
