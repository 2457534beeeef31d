"""Build the Tessera Solana program: clang-16 compiles C to BPF objects, this file links them.

cargo-build-sbf and platform-tools are not installable here, so the link step that turns
relocatable BPF objects into an SBPFv0 shared object (the format the upgradeable loader accepts)
lives in this file. The rules it follows are in /work/shared/SOLANA_PROGRAM.md; the layout it writes:

    ELF header | program headers | .text | .rodata | .dynamic | .dynsym | .dynstr | .rel.dyn
    | .shstrtab | section headers

Every allocated section has sh_addr == sh_offset (file offset == virtual address). Pointers into
.rodata are resolved here to 0x1_0000_0000 + address, calls between functions become pc-relative,
and only syscalls are left to the loader, as R_BPF_64_32 relocations on `call -1`.

Usage: python contracts/solana/build.py [--out PATH]      (default: contracts/solana/tessera.so)
The output is reproducible: no timestamps or paths reach it, and sources are processed in sorted order.
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC_DIR = HERE / "src"
DEFAULT_OUT = HERE / "tessera.so"
ENTRYPOINT = "entrypoint"

CLANG_FLAGS = [
    "-target", "bpfel", "-mcpu=v2", "-O2", "-ffreestanding", "-fno-builtin",
    "-fno-stack-protector", "-g0", "-Wall", "-Wextra", "-Werror", "-std=c11",
]

MM_PROGRAM_START = 0x1_0000_0000

# ELF constants
ET_REL, ET_DYN, EM_BPF = 1, 3, 247
SHT_NULL, SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_NOBITS, SHT_REL = 0, 1, 2, 3, 8, 9
SHT_DYNAMIC, SHT_DYNSYM = 6, 11
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 1, 2, 4
STB_LOCAL, STB_GLOBAL = 0, 1
STT_NOTYPE, STT_SECTION = 0, 3
SHN_UNDEF, SHN_ABS = 0, 0xFFF1
PT_LOAD, PT_DYNAMIC = 1, 2
PF_X, PF_W, PF_R = 1, 2, 4
DT_NULL, DT_STRTAB, DT_SYMTAB, DT_STRSZ, DT_SYMENT = 0, 5, 6, 10, 11
DT_REL, DT_RELSZ, DT_RELENT, DT_TEXTREL = 17, 18, 19, 22
R_BPF_NONE, R_BPF_64_64, R_BPF_64_ABS64, R_BPF_64_32 = 0, 1, 2, 10

BPF_CALL = 0x85
BPF_LDDW = 0x18

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_PHDR = struct.Struct("<IIQQQQQQ")
_SYM = struct.Struct("<IBBHQQ")
_REL = struct.Struct("<QQ")
_DYN = struct.Struct("<qQ")


class BuildError(RuntimeError):
    """The program could not be built; the message says which file or symbol and what to change."""


@dataclass
class _Section:
    index: int
    name: str
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    align: int
    data: bytes


@dataclass
class _Symbol:
    name: str
    value: int
    size: int
    bind: int
    type: int
    shndx: int


@dataclass
class _Object:
    name: str
    sections: list[_Section]
    symbols: list[_Symbol]
    relocations: dict[int, list[tuple[int, int, int]]]  # target section -> (offset, type, symbol)
    # Where each of this object's sections landed in the output: section index -> (output, offset).
    placement: dict[int, tuple[str, int]] = field(default_factory=dict)


def _cstr(table: bytes, offset: int) -> str:
    end = table.index(b"\0", offset)
    return table[offset:end].decode()


def _parse_object(name: str, blob: bytes) -> _Object:
    ident, e_type, e_machine, _, _, _, e_shoff, _, _, _, _, e_shentsize, e_shnum, e_shstrndx = (
        _EHDR.unpack_from(blob, 0)
    )
    if ident[:4] != b"\x7fELF" or ident[4] != 2 or ident[5] != 1:
        raise BuildError(f"{name}: not a 64-bit little-endian ELF object")
    if e_type != ET_REL or e_machine != EM_BPF:
        raise BuildError(f"{name}: expected a relocatable BPF object (clang -target bpfel -c)")
    raw = [_SHDR.unpack_from(blob, e_shoff + i * e_shentsize) for i in range(e_shnum)]
    shstr = blob[raw[e_shstrndx][4] : raw[e_shstrndx][4] + raw[e_shstrndx][5]]
    sections = []
    for i, (sh_name, sh_type, sh_flags, _, sh_offset, sh_size, sh_link, sh_info, sh_align, _) in enumerate(raw):
        data = b"" if sh_type == SHT_NOBITS else blob[sh_offset : sh_offset + sh_size]
        sections.append(
            _Section(i, _cstr(shstr, sh_name), sh_type, sh_flags, sh_offset, sh_size, sh_link, sh_info,
                     max(sh_align, 1), data)
        )
    symtabs = [s for s in sections if s.type == SHT_SYMTAB]
    symbols: list[_Symbol] = []
    if symtabs:
        symtab = symtabs[0]
        strtab = sections[symtab.link].data
        for off in range(0, len(symtab.data), _SYM.size):
            st_name, st_info, _, st_shndx, st_value, st_size = _SYM.unpack_from(symtab.data, off)
            symbols.append(_Symbol(_cstr(strtab, st_name), st_value, st_size, st_info >> 4, st_info & 0xF, st_shndx))
    relocations: dict[int, list[tuple[int, int, int]]] = {}
    for s in sections:
        if s.type == SHT_REL:
            entries = []
            for off in range(0, len(s.data), _REL.size):
                r_offset, r_info = _REL.unpack_from(s.data, off)
                entries.append((r_offset, r_info & 0xFFFFFFFF, r_info >> 32))
            relocations[s.info] = entries
        elif s.type == 4:  # SHT_RELA
            raise BuildError(f"{name}: RELA relocations in {s.name} are not expected from clang's BPF backend")
    return _Object(name, sections, symbols, relocations)


def _kind(section: _Section, obj_name: str) -> str | None:
    """Which output section an input section goes to (None: dropped)."""
    if not section.flags & SHF_ALLOC or section.size == 0:
        return None
    if section.name == ".text":
        return "text"
    if section.flags & SHF_EXECINSTR:
        raise BuildError(
            f"{obj_name}: code in section {section.name}; keep all code in .text "
            "(do not use -ffunction-sections or section attributes)"
        )
    if section.flags & SHF_WRITE or section.type == SHT_NOBITS:
        raise BuildError(
            f"{obj_name}: writable data in {section.name}. The SBPFv0 loader has no writable globals: "
            "make the data `static const`, or keep it on the heap (0x300000000) or in account data."
        )
    if section.name.startswith(".rodata"):
        return "rodata"
    raise BuildError(f"{obj_name}: unexpected allocated section {section.name}")


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def link(objects: list[tuple[str, bytes]]) -> bytes:
    parsed = [_parse_object(name, blob) for name, blob in objects]

    # 1. Concatenate the inputs into one .text and one .rodata (section-relative offsets for now).
    text = bytearray()
    rodata = bytearray()
    for obj in parsed:
        for s in obj.sections:
            kind = _kind(s, obj.name)
            if kind is None:
                continue
            buf = text if kind == "text" else rodata
            buf.extend(b"\0" * (_align(len(buf), max(s.align, 8 if kind == "text" else 1)) - len(buf)))
            obj.placement[s.index] = (kind, len(buf))
            buf.extend(s.data)
    if not text:
        raise BuildError("no code: the sources produced an empty .text")

    # 2. File layout: headers, then .text and .rodata at their final (file offset == address) places.
    n_phdrs = 4
    text_off = _align(_EHDR.size + n_phdrs * _PHDR.size, 8)
    rodata_off = _align(text_off + len(text), 8)
    base = {"text": text_off, "rodata": rodata_off}

    # 3. Global symbols (definitions) across all objects.
    globals_: dict[str, int] = {}
    for obj in parsed:
        for sym in obj.symbols:
            if sym.bind != STB_LOCAL and sym.shndx not in (SHN_UNDEF, SHN_ABS) and sym.shndx in obj.placement:
                kind, off = obj.placement[sym.shndx]
                if sym.name in globals_:
                    raise BuildError(f"{obj.name}: symbol {sym.name} is defined twice; make one of them static")
                globals_[sym.name] = base[kind] + off + sym.value
    if ENTRYPOINT not in globals_:
        raise BuildError(f"no `{ENTRYPOINT}` function: define `uint64_t {ENTRYPOINT}(const uint8_t *input)`")

    # 4. Apply relocations; collect the syscalls left for the loader.
    image = {"text": text, "rodata": rodata}
    syscall_sites: list[tuple[int, str]] = []  # (address of the call instruction, syscall name)
    for obj in parsed:
        for target_index, entries in sorted(obj.relocations.items()):
            if target_index not in obj.placement:
                continue  # relocations of dropped sections (debug info, BTF)
            kind, sec_off = obj.placement[target_index]
            buf = image[kind]
            for r_offset, r_type, r_sym in entries:
                sym = obj.symbols[r_sym]
                loc = sec_off + r_offset
                address = base[kind] + loc  # of the relocated bytes in the output
                target_kind = None
                if sym.shndx == SHN_UNDEF:
                    resolved = globals_.get(sym.name)
                    target_kind = "text" if resolved is not None and resolved < rodata_off else None
                elif sym.shndx in obj.placement:
                    target_kind, soff = obj.placement[sym.shndx]
                    resolved = base[target_kind] + soff + sym.value
                else:
                    raise BuildError(f"{obj.name}: relocation against {sym.name or 'a section'} that was dropped")
                if r_type == R_BPF_64_32:
                    if kind != "text" or buf[loc] != BPF_CALL:
                        raise BuildError(f"{obj.name}: R_BPF_64_32 at {r_offset:#x} is not on a call instruction")
                    if resolved is None:
                        if not sym.name.startswith("sol_") and not sym.name.startswith("abort"):
                            raise BuildError(
                                f"{obj.name}: undefined function {sym.name}. Define it in a source file, or, "
                                "if it is a Solana syscall, declare it in sol.h under its exact name."
                            )
                        struct.pack_into("<i", buf, loc + 4, -1)
                        syscall_sites.append((address, sym.name))
                        continue
                    if sym.type == STT_SECTION:
                        implicit = struct.unpack_from("<i", buf, loc + 4)[0]
                        resolved += (implicit + 1) * 8
                    if (resolved - address) % 8:
                        raise BuildError(f"{obj.name}: call target of {sym.name} is not instruction aligned")
                    struct.pack_into("<i", buf, loc + 4, (resolved - address) // 8 - 1)
                    buf[loc + 1] = buf[loc + 1] & 0x0F | 0x10  # src = 1: a pc-relative (internal) call
                elif r_type in (R_BPF_64_64, R_BPF_64_ABS64) and target_kind == "text":
                    # callx needs its targets registered by the loader, which this linker does not do
                    raise BuildError(
                        f"{obj.name}: the address of function {sym.name or '(static)'} is taken; function "
                        "pointers are not supported, dispatch with a switch instead"
                    )
                elif r_type == R_BPF_64_64:
                    if buf[loc] != BPF_LDDW:
                        raise BuildError(f"{obj.name}: R_BPF_64_64 at {r_offset:#x} is not on an lddw")
                    if resolved is None:
                        raise BuildError(f"{obj.name}: undefined data symbol {sym.name}")
                    addend = struct.unpack_from("<I", buf, loc + 4)[0]
                    value = MM_PROGRAM_START + resolved + addend
                    struct.pack_into("<I", buf, loc + 4, value & 0xFFFFFFFF)
                    struct.pack_into("<I", buf, loc + 12, value >> 32)
                elif r_type == R_BPF_64_ABS64:
                    if resolved is None:
                        raise BuildError(f"{obj.name}: undefined data symbol {sym.name}")
                    addend = struct.unpack_from("<Q", buf, loc)[0]
                    struct.pack_into("<Q", buf, loc, MM_PROGRAM_START + resolved + addend)
                elif r_type == R_BPF_NONE:
                    continue
                else:
                    raise BuildError(f"{obj.name}: unsupported relocation type {r_type} in {kind} at {r_offset:#x}")

    # Every remaining call with imm != -1 must land inside .text (the loader checks this too). The
    # second slot of an lddw starts with a zero opcode byte, so stepping by 8 never misreads it as a call.
    for pc in range(0, len(text), 8):
        if text[pc] == BPF_CALL:
            imm = struct.unpack_from("<i", text, pc + 4)[0]
            if imm != -1 and not 0 <= pc + 8 + imm * 8 < len(text):
                raise BuildError(f"call at .text+{pc:#x} jumps outside .text; an unresolved symbol?")

    # 5. Dynamic section contents.
    names = sorted({n for _, n in syscall_sites})
    dynstr = bytearray(b"\0")
    name_off: dict[str, int] = {}
    for n in names:
        if len(n) >= 64:
            raise BuildError(f"syscall name {n} is too long for the loader (< 64 bytes)")
        name_off[n] = len(dynstr)
        dynstr.extend(n.encode() + b"\0")
    dynsym = bytearray(_SYM.pack(0, 0, 0, 0, 0, 0))
    sym_index: dict[str, int] = {}
    for i, n in enumerate(names, start=1):
        sym_index[n] = i
        dynsym.extend(_SYM.pack(name_off[n], (STB_GLOBAL << 4) | STT_NOTYPE, 0, SHN_UNDEF, 0, 0))
    rel_dyn = bytearray()
    for address, n in sorted(syscall_sites):
        rel_dyn.extend(_REL.pack(address, (sym_index[n] << 32) | R_BPF_64_32))

    dynamic_off = _align(rodata_off + len(rodata), 8)
    n_dyn = 9
    dynsym_off = dynamic_off + n_dyn * _DYN.size
    dynstr_off = dynsym_off + len(dynsym)
    rel_off = _align(dynstr_off + len(dynstr), 8)
    dynamic = b"".join(
        _DYN.pack(tag, val)
        for tag, val in (
            (DT_REL, rel_off), (DT_RELSZ, len(rel_dyn)), (DT_RELENT, _REL.size),
            (DT_SYMTAB, dynsym_off), (DT_SYMENT, _SYM.size),
            (DT_STRTAB, dynstr_off), (DT_STRSZ, len(dynstr)),
            (DT_TEXTREL, 0), (DT_NULL, 0),
        )
    )
    assert len(dynamic) == n_dyn * _DYN.size

    section_names = [".text", ".rodata", ".dynamic", ".dynsym", ".dynstr", ".rel.dyn", ".shstrtab"]
    shstrtab = bytearray(b"\0")
    shname: dict[str, int] = {}
    for n in section_names:
        shname[n] = len(shstrtab)
        shstrtab.extend(n.encode() + b"\0")
    shstrtab_off = rel_off + len(rel_dyn)
    shoff = _align(shstrtab_off + len(shstrtab), 8)

    # (name, type, flags, offset, size, link, info, align, entsize); the index of .dynstr is 5 when
    # .rodata exists, 4 otherwise: computed below once empty sections are dropped.
    sections_out = [("", SHT_NULL, 0, 0, 0, 0, 0, 0, 0)]
    sections_out.append((".text", SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, text_off, len(text), 0, 0, 8, 0))
    if rodata:
        sections_out.append((".rodata", SHT_PROGBITS, SHF_ALLOC, rodata_off, len(rodata), 0, 0, 8, 0))
    dynstr_index = len(sections_out) + 2
    sections_out.append((".dynamic", SHT_DYNAMIC, SHF_ALLOC | SHF_WRITE, dynamic_off, len(dynamic),
                         dynstr_index, 0, 8, _DYN.size))
    sections_out.append((".dynsym", SHT_DYNSYM, SHF_ALLOC, dynsym_off, len(dynsym), dynstr_index, 1, 8, _SYM.size))
    sections_out.append((".dynstr", SHT_STRTAB, SHF_ALLOC, dynstr_off, len(dynstr), 0, 0, 1, 0))
    dynsym_index = dynstr_index - 1
    sections_out.append((".rel.dyn", SHT_REL, SHF_ALLOC, rel_off, len(rel_dyn), dynsym_index, 0, 8, _REL.size))
    sections_out.append((".shstrtab", SHT_STRTAB, 0, shstrtab_off, len(shstrtab), 0, 0, 1, 0))

    entry = globals_[ENTRYPOINT]
    phdrs = [
        (PT_LOAD, PF_R | PF_X, text_off, len(text)),
        (PT_LOAD, PF_R, rodata_off, len(rodata)),
        (PT_LOAD, PF_R, dynamic_off, shstrtab_off - dynamic_off),
        (PT_DYNAMIC, PF_R | PF_W, dynamic_off, len(dynamic)),
    ]
    assert len(phdrs) == n_phdrs

    out = bytearray(shoff + len(sections_out) * _SHDR.size)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8
    _EHDR.pack_into(out, 0, ident, ET_DYN, EM_BPF, 1, entry, _EHDR.size, shoff, 0, _EHDR.size, _PHDR.size,
                    len(phdrs), _SHDR.size, len(sections_out), len(sections_out) - 1)
    for i, (p_type, p_flags, off, size) in enumerate(phdrs):
        _PHDR.pack_into(out, _EHDR.size + i * _PHDR.size, p_type, p_flags, off, off, off, size, size, 8)
    out[text_off : text_off + len(text)] = text
    out[rodata_off : rodata_off + len(rodata)] = rodata
    out[dynamic_off : dynamic_off + len(dynamic)] = dynamic
    out[dynsym_off : dynsym_off + len(dynsym)] = dynsym
    out[dynstr_off : dynstr_off + len(dynstr)] = dynstr
    out[rel_off : rel_off + len(rel_dyn)] = rel_dyn
    out[shstrtab_off : shstrtab_off + len(shstrtab)] = shstrtab
    for i, (n, sh_type, flags, off, size, lnk, info, align, entsize) in enumerate(sections_out):
        addr = off if flags & SHF_ALLOC else 0
        _SHDR.pack_into(out, shoff + i * _SHDR.size, shname.get(n, 0), sh_type, flags, addr, off, size,
                        lnk, info, align, entsize)
    return bytes(out)


def find_clang() -> str | None:
    return shutil.which(os.environ.get("TESSERA_CLANG", "clang-16"))


def compile_sources(src_dir: Path = SRC_DIR, clang: str | None = None) -> list[tuple[str, bytes]]:
    clang = clang or find_clang()
    if clang is None:
        raise BuildError("clang-16 is not installed: run `sudo apt-get install clang-16` (Debian) and build again")
    sources = sorted(src_dir.glob("*.c"))
    if not sources:
        raise BuildError(f"no C sources in {src_dir}")
    objects = []
    with tempfile.TemporaryDirectory(prefix="tessera-sbf-") as tmp:
        for src in sources:
            obj = Path(tmp) / (src.stem + ".o")
            # Compile from inside src_dir with relative names so no absolute path reaches the object.
            cmd = [clang, *CLANG_FLAGS, "-c", src.name, "-o", str(obj)]
            proc = subprocess.run(cmd, cwd=src_dir, capture_output=True, text=True)
            if proc.returncode != 0:
                raise BuildError(f"clang failed on {src.name}:\n{proc.stderr.strip()}")
            objects.append((src.name, obj.read_bytes()))
    return objects


def build(out: Path | None = DEFAULT_OUT) -> bytes:
    program = link(compile_sources())
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(program)
    return program


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the Tessera Solana program (SBPFv0 shared object).")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output path (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    try:
        program = build(args.out)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({len(program)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
