"""Where every input section goes: one text segment and one rodata segment.

SBPFv3 maps rodata at VM address 0 and text at 1 << 32, with no relocations left for the loader, so
an address is known as soon as a section is placed: rodata offset = its VM address, text offset + 1 << 32.
Rodata byte 0 stays unused so that no object sits at address 0 (NULL).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .elf import SHF_ALLOC, SHF_EXECINSTR, SHF_WRITE, SHT_NOBITS, STB_LOCAL, InputSection, ObjectFile
from .errors import BuildError

TEXT, RODATA = "text", "rodata"
MM_RODATA_START = 0
MM_BYTECODE_START = 1 << 32
INSN_SIZE = 8
ENTRYPOINT = "entrypoint"


@dataclass
class Layout:
    text: bytearray = field(default_factory=bytearray)
    rodata: bytearray = field(default_factory=lambda: bytearray(1))  # byte 0: the NULL guard
    # (object index, section index) -> (segment, offset inside the segment)
    placement: dict[tuple[int, int], tuple[str, int]] = field(default_factory=dict)
    # global symbol -> (segment, offset)
    globals: dict[str, tuple[str, int]] = field(default_factory=dict)

    def segment(self, kind: str) -> bytearray:
        return self.text if kind == TEXT else self.rodata

    @staticmethod
    def vm_address(kind: str, offset: int) -> int:
        return (MM_BYTECODE_START if kind == TEXT else MM_RODATA_START) + offset

    @property
    def entry_offset(self) -> int:
        return self.globals[ENTRYPOINT][1]


def classify(section: InputSection, obj_name: str) -> str | None:
    """The segment an input section goes to (None: not loaded, e.g. symbol tables or .llvm_addrsig)."""
    if not section.flags & SHF_ALLOC or section.size == 0:
        return None
    if section.name == ".text":
        return TEXT
    if section.flags & SHF_EXECINSTR:
        raise BuildError(
            f"{obj_name}: code in section {section.name}; keep all code in .text "
            "(do not use -ffunction-sections or section attributes)"
        )
    if section.flags & SHF_WRITE or section.type == SHT_NOBITS:
        raise BuildError(
            f"{obj_name}: writable data in {section.name}. Solana programs have no writable globals "
            "(SBPFv3 maps only read-only data and code): make the data `static const`, or keep it on "
            "the heap (0x300000000) or in account data."
        )
    if section.name.startswith(".rodata"):
        return RODATA
    raise BuildError(f"{obj_name}: unexpected allocated section {section.name}")


def _pad_to(buf: bytearray, alignment: int) -> None:
    buf.extend(bytes(-len(buf) % alignment))


def place(objects: list[ObjectFile]) -> Layout:
    layout = Layout()
    for o, obj in enumerate(objects):
        for section in obj.sections:
            kind = classify(section, obj.name)
            if kind is None:
                continue
            buf = layout.segment(kind)
            _pad_to(buf, max(section.align, INSN_SIZE) if kind == TEXT else section.align)
            layout.placement[(o, section.index)] = (kind, len(buf))
            buf.extend(section.data)
    if not layout.text:
        raise BuildError("no code: the sources produced an empty .text")
    _pad_to(layout.rodata, INSN_SIZE)  # segment sizes are multiples of 8

    for o, obj in enumerate(objects):
        for sym in obj.symbols:
            if sym.bind == STB_LOCAL or not sym.defined or (o, sym.shndx) not in layout.placement:
                continue
            if sym.name in layout.globals:
                raise BuildError(f"{obj.name}: symbol {sym.name} is defined twice; make one of them static")
            kind, offset = layout.placement[(o, sym.shndx)]
            layout.globals[sym.name] = (kind, offset + sym.value)
    entry = layout.globals.get(ENTRYPOINT)
    if entry is None or entry[0] != TEXT:
        raise BuildError(f"no `{ENTRYPOINT}` function: define `uint64_t {ENTRYPOINT}(const uint8_t *input)`")
    if entry[1] % INSN_SIZE:
        raise BuildError(f"`{ENTRYPOINT}` is not instruction aligned")
    return layout
