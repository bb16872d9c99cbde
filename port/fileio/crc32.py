"""CRC-32 (the zip / zlib one) of data summed in pieces, possibly in parallel.

``zlib.crc32`` sums one buffer (it releases the GIL on large ones, so threads run in parallel).
To sum a long run in pieces on several threads, each piece is summed on its own and the results
are joined with :func:`combine`, which shifts the first CRC past the second piece's length:
the CRC is linear over GF(2), so ``crc(a + b) = crc(a) * x^(8 len(b)) mod P  xor  crc(b)``.
A run of zeros (a hole in a sparse file) is summed without reading it (:func:`zeros`).
"""
import zlib

_POLY = 0xEDB88320  # x^32 + x^26 + ... + 1, bit-reflected: bit 31 is x^0


def _mul_mod(a, b):
    """a * b modulo the polynomial, both bit-reflected (bit 31 is x^0, bit 0 is x^31)."""
    product = 0
    for bit in range(31, -1, -1):  # a's coefficients of x^0, x^1, ...
        if a >> bit & 1:
            product ^= b
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1  # b *= x
    return product


_X_POW_2K = [1 << 30]  # x^(2^k) mod P for k = 0, 1, 2, ...: x^1, x^2, x^4, ...
for _ in range(63):
    _X_POW_2K.append(_mul_mod(_X_POW_2K[-1], _X_POW_2K[-1]))


def _x_pow_8n(n):
    """x^(8n) mod P, the factor that moves a CRC past ``n`` bytes."""
    result, k = 1 << 31, 3  # x^0; and 8n = n << 3, so start at x^(2^3)
    while n:
        if n & 1:
            result = _mul_mod(_X_POW_2K[k], result)
        n >>= 1
        k += 1
    return result


def combine(crc1, crc2, len2):
    """``zlib.crc32(a + b)`` from ``crc1 = zlib.crc32(a)``, ``crc2 = zlib.crc32(b)``, ``len(b)``."""
    return _mul_mod(_x_pow_8n(len2), crc1) ^ crc2 if len2 else crc1


def zeros(n):
    """``zlib.crc32(bytes(n))`` in O(log n) steps."""
    crc, run, length = 0, zlib.crc32(b"\0"), 1  # run: the CRC of `length` zero bytes
    while n:
        if n & 1:
            crc = combine(crc, run, length)
        run, length = combine(run, run, length), 2 * length
        n >>= 1
    return crc
