#include "bn254.h"

/* sol_alt_bn128_group_op operations (EVM precompile encodings 0x06, 0x07, 0x08). */
#define ALT_BN128_ADD 0
#define ALT_BN128_PAIRING 3

/* The base field modulus p as little-endian 64-bit limbs. */
static const u64 FIELD_P[4] = {
    0x3c208c16d87cfd47ULL,
    0x97816a916871ca8dULL,
    0xb85045b68181585dULL,
    0x30644e72e131a029ULL,
};

/* -G2 (the negated generator) in EIP-197 order x_im | x_re | y_im | y_re. Pairing with -G2 instead
 * of negating sigma saves a group operation on-chain. */
static const u8 NEG_G2[G2_LEN] = {
    0x19, 0x8e, 0x93, 0x93, 0x92, 0x0d, 0x48, 0x3a, 0x72, 0x60, 0xbf, 0xb7, 0x31, 0xfb, 0x5d, 0x25,
    0xf1, 0xaa, 0x49, 0x33, 0x35, 0xa9, 0xe7, 0x12, 0x97, 0xe4, 0x85, 0xb7, 0xae, 0xf3, 0x12, 0xc2,
    0x18, 0x00, 0xde, 0xef, 0x12, 0x1f, 0x1e, 0x76, 0x42, 0x6a, 0x00, 0x66, 0x5e, 0x5c, 0x44, 0x79,
    0x67, 0x43, 0x22, 0xd4, 0xf7, 0x5e, 0xda, 0xdd, 0x46, 0xde, 0xbd, 0x5c, 0xd9, 0x92, 0xf6, 0xed,
    0x27, 0x5d, 0xc4, 0xa2, 0x88, 0xd1, 0xaf, 0xb3, 0xcb, 0xb1, 0xac, 0x09, 0x18, 0x75, 0x24, 0xc7,
    0xdb, 0x36, 0x39, 0x5d, 0xf7, 0xbe, 0x3b, 0x99, 0xe6, 0x73, 0xb1, 0x3a, 0x07, 0x5a, 0x65, 0xec,
    0x1d, 0x9b, 0xef, 0xcd, 0x05, 0xa5, 0x32, 0x3e, 0x6d, 0xa4, 0xd4, 0x35, 0xf3, 0xb6, 0x17, 0xcd,
    0xb3, 0xaf, 0x83, 0x28, 0x5c, 0x2d, 0xf7, 0x11, 0xef, 0x39, 0xc0, 0x15, 0x71, 0x82, 0x7f, 0x9d,
};

static void u256_from_be(u64 out[4], const u8 in[32]) {
  for (int limb = 0; limb < 4; limb++) {
    const u8 *p = in + (3 - limb) * 8;
    u64 v = 0;
    for (int j = 0; j < 8; j++) v = (v << 8) | p[j];
    out[limb] = v;
  }
}

static void u256_to_be(u8 out[32], const u64 in[4]) {
  for (int limb = 0; limb < 4; limb++) {
    u8 *p = out + (3 - limb) * 8;
    for (int j = 0; j < 8; j++) p[j] = (u8)(in[limb] >> (56 - 8 * j));
  }
}

static bool u256_ge_p(const u64 a[4]) {
  for (int i = 3; i >= 0; i--) {
    if (a[i] != FIELD_P[i]) return a[i] > FIELD_P[i];
  }
  return true;
}

static void u256_sub_p(u64 a[4]) {
  u64 borrow = 0;
  for (int i = 0; i < 4; i++) {
    u64 d = a[i] - FIELD_P[i];
    u64 b1 = a[i] < FIELD_P[i];
    u64 d2 = d - borrow;
    u64 b2 = d < borrow;
    a[i] = d2;
    borrow = b1 | b2;
  }
}

/* p as little-endian 32-bit limbs, and -p^-1 mod 2^32, for Montgomery multiplication (BPF has no
 * 64x64->128 multiply, so 32-bit limbs keep every partial product inside a u64). */
static const u32 P32[8] = {0xd87cfd47, 0x3c208c16, 0x6871ca8d, 0x97816a91,
                           0x8181585d, 0xb85045b6, 0xe131a029, 0x30644e72};
#define P32_INV_NEG 0xe4866389U

static void limbs32_from_be(u32 out[8], const u8 in[32]) {
  for (int i = 0; i < 8; i++) {
    const u8 *q = in + (7 - i) * 4;
    out[i] = ((u32)q[0] << 24) | ((u32)q[1] << 16) | ((u32)q[2] << 8) | (u32)q[3];
  }
}

/* out = a * b * 2^-256 mod p (CIOS), for a, b < p; out < p. */
static void mont_mul(u32 out[8], const u32 a[8], const u32 b[8]) {
  u32 t[10] = {0};
  for (int i = 0; i < 8; i++) {
    u64 carry = 0;
    for (int j = 0; j < 8; j++) {
      u64 s = (u64)t[j] + (u64)a[j] * b[i] + carry;
      t[j] = (u32)s;
      carry = s >> 32;
    }
    u64 s = (u64)t[8] + carry;
    t[8] = (u32)s;
    t[9] = (u32)(s >> 32);
    u32 m = t[0] * P32_INV_NEG;
    s = (u64)t[0] + (u64)m * P32[0];
    carry = s >> 32;
    for (int j = 1; j < 8; j++) {
      s = (u64)t[j] + (u64)m * P32[j] + carry;
      t[j - 1] = (u32)s;
      carry = s >> 32;
    }
    s = (u64)t[8] + carry;
    t[7] = (u32)s;
    t[8] = t[9] + (u32)(s >> 32);
  }
  /* t < 2p: subtract p once if t >= p */
  bool ge = t[8] != 0;
  if (!ge) {
    ge = true;
    for (int i = 7; i >= 0; i--) {
      if (t[i] != P32[i]) {
        ge = t[i] > P32[i];
        break;
      }
    }
  }
  if (ge) {
    u64 borrow = 0;
    for (int i = 0; i < 8; i++) {
      u64 d = (u64)t[i] - P32[i] - borrow;
      t[i] = (u32)d;
      borrow = (d >> 32) & 1;
    }
  }
  for (int i = 0; i < 8; i++) out[i] = t[i];
}

/* w^2 == y (mod p), checked as mont(w, w) == mont(y, 1): both sides carry the same 2^-256. */
static bool is_square_root(const u8 w_be[32], const u8 y_be[32]) {
  u32 w[8], y[8], one[8] = {1, 0, 0, 0, 0, 0, 0, 0}, lhs[8], rhs[8];
  limbs32_from_be(w, w_be);
  limbs32_from_be(y, y_be);
  mont_mul(lhs, w, w);
  mont_mul(rhs, y, one);
  u32 diff = 0;
  for (int i = 0; i < 8; i++) diff |= lhs[i] ^ rhs[i];
  return diff == 0;
}

static bool coordinate_in_field(const u8 be[32]) {
  u64 v[4];
  u256_from_be(v, be);
  return !u256_ge_p(v);
}

u64 g1_check(const u8 point[G1_LEN], u64 err_not_on_curve) {
  if (!coordinate_in_field(point) || !coordinate_in_field(point + 32)) return err_not_on_curve;
  /* P + O with O = (0, 0), the EVM encoding of infinity: the syscall refuses a P off the curve,
   * and an addition is the cheapest group operation. */
  u8 *input = SCRATCH->group_op_input;
  sol_memcpy_(input, point, G1_LEN);
  sol_memset_(input + G1_LEN, 0, G1_LEN);
  if (sol_alt_bn128_group_op(ALT_BN128_ADD, input, 2 * G1_LEN, SCRATCH->group_op_output) != 0)
    return err_not_on_curve;
  return 0;
}

u64 g2_check(const u8 key[G2_LEN]) {
  if (sol_is_zero(key, G2_LEN)) return ERR_KEY_INFINITY;
  for (int i = 0; i < 4; i++)
    if (!coordinate_in_field(key + 32 * i)) return ERR_KEY_OUT_OF_RANGE;
  /* No G2 scalar multiplication is available to compute r·Q, but the pairing syscall decodes its G2
   * input with arkworks' validation (on the twist AND in the order-r subgroup) and fails otherwise,
   * like the EVM 0x08 precompile CommitteeVerifier uses for the same check. One pair e(G1, Q): only
   * whether the syscall accepts Q matters, not the value. tests/unit/test_solana_rotation_checks.py
   * pins this behaviour of the runtime. */
  u8 *input = SCRATCH->pairing_input;
  sol_memset_(input, 0, G1_LEN);
  input[31] = 1; /* G1 generator (1, 2) */
  input[63] = 2;
  sol_memcpy_(input + G1_LEN, key, G2_LEN);
  u8 result[32];
  if (sol_alt_bn128_group_op(ALT_BN128_PAIRING, input, G1_LEN + G2_LEN, result) != 0)
    return ERR_KEY_NOT_IN_SUBGROUP;
  return 0;
}

u64 bls_verify_hinted(const u8 digest[32], const u8 hint[HINT_LEN], const u8 sigma[G1_LEN], const u8 pk[G2_LEN]) {
  u8 k = hint[0];
  const u8 *y = hint + 1;
  const u8 *y_sqrt = hint + 33;
  if (sol_is_zero(sigma, G1_LEN)) return ERR_SIGNATURE_INFINITY;
  if (sol_is_zero(pk, G2_LEN)) return ERR_KEY_INFINITY;
  for (int i = 0; i < 4; i++)
    if (!coordinate_in_field(pk + 32 * i)) return ERR_KEY_OUT_OF_RANGE;
  u64 err = g1_check(sigma, ERR_SIGNATURE_NOT_ON_CURVE);
  if (err) return err;

  /* Hash to G1 with the relayer's hint: x = (uint256(digest) mod p) + k mod p. k is one byte, which
   * bounds how far from uint256(digest) mod p the point may lie (see README: why a bounded k). */
  if (!coordinate_in_field(y) || !coordinate_in_field(y_sqrt)) return ERR_HINT_OUT_OF_RANGE;
  /* y must be the principal root beta^((p+1)/4), the one hash_to_g1 returns everywhere else. As
   * p = 3 mod 4 it is the root that is itself a square, so the relayer proves it with y_sqrt.
   * Without this, (H, sigma) and (-H, -sigma) would both pass for the same message. */
  if (!is_square_root(y_sqrt, y)) return ERR_HINT_NOT_CANONICAL;
  u64 x[4];
  u256_from_be(x, digest);
  while (u256_ge_p(x)) u256_sub_p(x); /* digest < 2^256 < 6p: at most 5 rounds */
  x[0] += k;
  if (x[0] < k) {
    for (int i = 1; i < 4 && ++x[i] == 0; i++) {
    }
  }
  if (u256_ge_p(x)) u256_sub_p(x);

  u8 *input = SCRATCH->pairing_input;
  u8 *h = input + G1_LEN + G2_LEN;
  u256_to_be(h, x);
  sol_memcpy_(h + 32, y, 32);
  err = g1_check(h, ERR_HINT_NOT_ON_CURVE);
  if (err) return err;

  /* e(sigma, -G2) * e(H, PK) == 1 */
  sol_memcpy_(input, sigma, G1_LEN);
  sol_memcpy_(input + G1_LEN, NEG_G2, G2_LEN);
  sol_memcpy_(h + G1_LEN, pk, G2_LEN);
  u8 result[32];
  if (sol_alt_bn128_group_op(ALT_BN128_PAIRING, input, 2 * (G1_LEN + G2_LEN), result) != 0)
    return ERR_PAIRING_INPUT_INVALID;
  if (!sol_is_zero(result, 31) || result[31] != 1) return ERR_SIGNATURE_INVALID;
  return 0;
}
