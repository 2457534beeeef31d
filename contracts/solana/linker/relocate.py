"""Patching the placed code and data: every address is final, nothing is left for the loader.

* calls between functions (R_BPF_64_32 on a `call` to a defined function): pc-relative, src = 1;
* calls to undefined functions: static syscalls, src = 0 and imm = murmur3_32(name), only for names
  on the allow-list (syscalls.py);
* `lddw` of a rodata address (R_BPF_64_64) and 64-bit pointers in rodata (R_BPF_64_ABS64): the
  rodata offset, which is the VM address since SBPFv3 maps rodata at 0;
* the address of a function (a function pointer, for `callx`) is refused: dispatch with a switch.
"""

from __future__ import annotations

import struct

from .elf import R_BPF_64_32, R_BPF_64_64, R_BPF_64_ABS64, R_BPF_NONE, STT_SECTION, ObjectFile
from .errors import BuildError
from .layout import INSN_SIZE, RODATA, TEXT, Layout
from .syscalls import ALLOWED_SYSCALLS, check_syscall, syscall_hash

BPF_CALL = 0x85
BPF_CALLX = 0x8D
BPF_LDDW = 0x18
SRC_SYSCALL, SRC_INTERNAL = 0, 1


def _set_src(code: bytearray, at: int, src: int) -> None:
    code[at + 1] = (code[at + 1] & 0x0F) | (src << 4)


def apply_relocations(objects: list[ObjectFile], layout: Layout) -> list[tuple[int, str]]:
    """Patches layout.text and layout.rodata in place; returns the syscall sites (text offset, name)."""
    syscall_sites: list[tuple[int, str]] = []
    for o, obj in enumerate(objects):
        for target_index, entries in sorted(obj.relocations.items()):
            if (o, target_index) not in layout.placement:
                continue  # relocations of sections that are not loaded (debug info, BTF, addrsig)
            kind, section_offset = layout.placement[(o, target_index)]
            buf = layout.segment(kind)
            for rel in entries:
                if rel.type == R_BPF_NONE:
                    continue
                sym = obj.symbols[rel.symbol]
                loc = section_offset + rel.offset
                where = f"{obj.name} ({kind}+{loc:#x})"
                if sym.defined:
                    if (o, sym.shndx) not in layout.placement:
                        raise BuildError(f"{where}: relocation against {sym.name or 'a section'}, which is not loaded")
                    target_kind, target_offset = layout.placement[(o, sym.shndx)]
                    target = (target_kind, target_offset + sym.value)
                else:
                    target = layout.globals.get(sym.name)

                if rel.type == R_BPF_64_32:
                    if kind != TEXT or buf[loc] != BPF_CALL:
                        raise BuildError(f"{where}: R_BPF_64_32 is not on a call instruction")
                    if target is None:
                        struct.pack_into("<I", buf, loc + 4, check_syscall(sym.name, obj.name))
                        _set_src(buf, loc, SRC_SYSCALL)
                        syscall_sites.append((loc, sym.name))
                        continue
                    target_kind, destination = target
                    if target_kind != TEXT:
                        raise BuildError(f"{where}: call to {sym.name}, which is data")
                    if sym.type == STT_SECTION:  # static function: clang left its offset in the immediate
                        destination += (struct.unpack_from("<i", buf, loc + 4)[0] + 1) * INSN_SIZE
                    if (destination - loc) % INSN_SIZE:
                        raise BuildError(f"{where}: call target of {sym.name} is not instruction aligned")
                    struct.pack_into("<i", buf, loc + 4, (destination - loc) // INSN_SIZE - 1)
                    _set_src(buf, loc, SRC_INTERNAL)
                elif rel.type in (R_BPF_64_64, R_BPF_64_ABS64):
                    if target is None:
                        raise BuildError(f"{where}: undefined data symbol {sym.name}")
                    if target[0] == TEXT:
                        raise BuildError(
                            f"{where}: the address of function {sym.name or '(static)'} is taken; function "
                            "pointers are not supported, dispatch with a switch instead"
                        )
                    if rel.type == R_BPF_64_64:
                        if kind != TEXT or buf[loc] != BPF_LDDW:
                            raise BuildError(f"{where}: R_BPF_64_64 is not on an lddw")
                        value = Layout.vm_address(RODATA, target[1] + struct.unpack_from("<I", buf, loc + 4)[0])
                        struct.pack_into("<I", buf, loc + 4, value & 0xFFFFFFFF)
                        struct.pack_into("<I", buf, loc + 12, value >> 32)
                    else:
                        addend = struct.unpack_from("<Q", buf, loc)[0]
                        struct.pack_into("<Q", buf, loc, Layout.vm_address(RODATA, target[1] + addend))
                else:
                    raise BuildError(f"{where}: unsupported relocation type {rel.type}")
    return syscall_sites


def check_calls(layout: Layout, syscall_sites: list[tuple[int, str]]) -> None:
    """Every call in the text must be an internal call landing inside it or an allowed syscall."""
    text = layout.text
    syscalls = {offset for offset, _ in syscall_sites}
    allowed_hashes = {syscall_hash(name) for name in ALLOWED_SYSCALLS}
    pc = 0
    while pc < len(text):
        opcode = text[pc]
        if opcode == BPF_CALLX:
            raise BuildError(f"callx at text+{pc:#x}: function pointers are not supported")
        if opcode == BPF_CALL:
            src = text[pc + 1] >> 4
            imm = struct.unpack_from("<i", text, pc + 4)[0]
            if src == SRC_SYSCALL:
                if pc not in syscalls or imm & 0xFFFFFFFF not in allowed_hashes:
                    raise BuildError(f"call at text+{pc:#x} names no allowed syscall; an unresolved symbol?")
            elif src != SRC_INTERNAL or not 0 <= pc + INSN_SIZE + imm * INSN_SIZE < len(text):
                raise BuildError(f"call at text+{pc:#x} jumps outside the text; an unresolved symbol?")
        pc += 2 * INSN_SIZE if opcode == BPF_LDDW else INSN_SIZE
