"""A range coder (LZMA-style, with carry propagation) on 64-bit registers.

Python integers make wide registers free: `low` holds 64 bits plus a carry bit
and `range` stays in [2^56, 2^64), so a symbol table may total up to 2^32 with
a truncation loss below 2^-24 bits per symbol. Each symbol is coded with
(cum, freq, total): it owns [cum, cum + freq) of [0, total), freq >= 1.

    enc = Encoder(); enc.encode(cum, freq, total); ...; data = enc.finish()
    dec = Decoder(data); v = dec.target(total); ... find s with cum[s] <= v < cum[s+1]
    dec.consume(cum[s], freq[s])
"""

BITS = 64
TOP = 1 << (BITS - 8)  # renormalise (shift a byte out) when range falls below this
MASK = (1 << BITS) - 1
MAX_TOTAL = 1 << 32


class Encoder:
    def __init__(self):
        self.low = 0
        self.range = MASK
        self.cache = 0  # the last byte not yet written: a carry may still change it
        self.pending = 1  # cache byte + number of 0xFF bytes after it, all waiting on a carry
        self.out = bytearray()

    def encode(self, cum: int, freq: int, total: int) -> None:
        assert 0 <= cum and 1 <= freq and cum + freq <= total <= MAX_TOTAL, (cum, freq, total)
        r = self.range // total
        self.low += r * cum
        self.range = r * freq
        while self.range < TOP:
            self.range <<= 8
            self._shift_low()

    def _shift_low(self) -> None:
        carry = self.low >> BITS
        if carry or self.low < (0xFF << (BITS - 8)):
            # The top byte is settled (or the carry settles it): write the cache and the 0xFF run.
            byte = self.cache
            for _ in range(self.pending):
                self.out.append((byte + carry) & 0xFF)
                byte = 0xFF
            self.pending = 0
            self.cache = (self.low >> (BITS - 8)) & 0xFF
        self.pending += 1
        self.low = (self.low << 8) & MASK

    def finish(self) -> bytes:
        # Any value in [low, low + range) decodes the same; pick the one with the most trailing zero
        # bits (range >= 2^56, so a multiple of 2^56 is always in reach). The decoder reads zeros past
        # the end, so trailing zero bytes need not be stored at all.
        step = 1 << (BITS - 8)
        self.low = -(-self.low // step) * step
        for _ in range(BITS // 8 + 1):
            self._shift_low()
        return bytes(self.out).rstrip(b"\x00")


class Decoder:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0
        self.range = MASK
        self.code = 0
        for _ in range(BITS // 8 + 1):  # the first byte is the encoder's initial cache (0)
            self.code = (self.code << 8) | self._next_byte()
        self._r = 0

    def _next_byte(self) -> int:
        # Past the end the encoder's flush wrote zeros; reading zeros keeps a truncated stream from crashing.
        byte = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return byte

    def target(self, total: int) -> int:
        """The value in [0, total) that the next symbol's interval contains."""
        self._r = self.range // total
        return min(self.code // self._r, total - 1)

    def consume(self, cum: int, freq: int) -> None:
        """Remove the symbol found from target(): (cum, freq) of the same table."""
        self.code -= self._r * cum
        self.range = self._r * freq
        while self.range < TOP:
            self.range <<= 8
            self.code = (self.code << 8) | self._next_byte()
