"""GPT-2's byte <-> printable-character tables, shared by the BPE tokenizers and the Hugging Face export.

A byte-level BPE works on text where each of the 256 bytes is one printable
character, so any bytes (not only valid UTF-8) become a string it can merge.
"""


def _byte_to_char() -> dict[int, str]:
    """GPT-2's map from the 256 bytes to printable characters (one char per byte)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


BYTE_TO_CHAR = _byte_to_char()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}
_TO_CHARS = str.maketrans({chr(b): c for b, c in BYTE_TO_CHAR.items()})


def to_chars(data: bytes) -> str:
    """The bytes as the mapped characters a byte-level BPE reads."""
    return data.decode("latin-1").translate(_TO_CHARS)
