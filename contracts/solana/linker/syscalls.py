"""The syscalls the program may call, and their SBPFv3 encoding.

An SBPFv0 program named its syscalls in relocations and the loader refused unknown names at
deployment. SBPFv3 calls a syscall statically (`call` with src = 0 and imm = murmur3_32(name)): an
unknown or misspelt name deploys fine and only fails when the instruction runs. This allow-list puts
the check back at build time.

To add a syscall: check that the runtime registers it (/work/shared/SOLANA_PROGRAM.md lists what this
runtime has; `sol_big_mod_exp`, `sol_blake3`, `sol_sha512` and `sol_remaining_compute_units` are NOT
registered), declare it in `src/sol.h` under its exact name, add the name below, rebuild, and test
the instruction that calls it through a deployment (tests/unit/test_sbpf_v3.py).
"""

from __future__ import annotations

from .errors import BuildError
from .murmur3 import murmur3_32

ALLOWED_SYSCALLS: frozenset[str] = frozenset(
    {
        # used by the program today
        "sol_log_",
        "sol_log_data",
        "sol_keccak256",
        "sol_set_return_data",
        "sol_alt_bn128_group_op",
        "sol_memcpy_",
        "sol_memset_",
        "sol_memcmp_",
        "sol_get_clock_sysvar",
        "sol_get_rent_sysvar",
        "sol_invoke_signed_c",
        "sol_create_program_address",
        "sol_try_find_program_address",
        # registered in this runtime and declared in sol.h, not called yet
        "abort",
        "sol_panic_",
        "sol_log_64_",
        "sol_log_pubkey",
        "sol_log_compute_units_",
        "sol_sha256",
        "sol_secp256k1_recover",
        "sol_poseidon",
        "sol_alt_bn128_compression",
        "sol_curve_validate_point",
        "sol_curve_group_op",
        "sol_curve_multiscalar_mul",
        "sol_curve_pairing_map",
        "sol_get_sysvar",
        "sol_get_return_data",
        "sol_memmove_",
    }
)


def syscall_hash(name: str) -> int:
    """The `call` immediate of a static syscall (`sol_log_` -> 0x207559bd)."""
    return murmur3_32(name.encode())


def check_syscall(name: str, where: str) -> int:
    """The hash of an allowed syscall; a BuildError naming the symbol otherwise."""
    if name not in ALLOWED_SYSCALLS:
        raise BuildError(
            f"{where}: calls undefined function `{name}`, which is not an allowed syscall. If it is a "
            f"function of the program, define it in a source file (check the spelling). If it is a Solana "
            f"syscall the runtime registers, declare it in src/sol.h and add \"{name}\" to ALLOWED_SYSCALLS "
            f"in contracts/solana/linker/syscalls.py (SBPFv3 refuses unknown syscalls only when they run)."
        )
    return syscall_hash(name)
