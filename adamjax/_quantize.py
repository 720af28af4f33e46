"""Blockwise dynamic quantization of optimizer moments (8 and 4 bits).

A moment is cut into blocks of ``block_size`` consecutive elements; each block
keeps its largest magnitude (``absmax``) in float32 and every element as the
index of the nearest entry of a fixed codebook of values in ``[-1, 1]``
(signed, for the first moment) or ``[0, 1]`` (unsigned, for the second)::

    scale_b = max_{i in b} |x_i|
    code_i  = argmin_j | x_i / scale_b - map_j |      (ties: the lower j)
    x_i    ~= map[code_i] * scale_b

The 8-bit codebooks are the dynamic ("dynamic tree") maps of Dettmers et al.
(2022): one sign bit, a run of zero bits whose length is a decimal exponent
(``10^-6 .. 10^0``), an indicator bit and a linearly spaced fraction, so that
small magnitudes keep relative precision. At 4 bits the first moment uses the
same construction with at most 3 exponent bits, and the second a linear map
``{1/16, 2/16, ..., 1}`` without zero, so that no non-zero second moment is
stored as zero (a zero there would turn ``m / (sqrt(v) + eps)`` into a huge
step); these are the 4-bit maps of Li et al. (2023), as torchao uses them.

Layout (what makes "codes sharded like their parameter" possible). A
parameter of shape ``s`` is split as ``s = lead + trail`` where ``trail`` is
the shortest run of trailing axes holding at least one block
(``prod(trail) >= block_size``; usually just the last axis). Every row
``x[lead_index]`` is flattened and blocked on its own, the last block of a row
possibly short. Then

* ``codes`` has shape ``lead + (T,)`` at 8 bits and ``lead + (ceil(T / 2),)``
  at 4 bits (two codes a byte, the first element in the high nibble), with
  ``T = prod(trail)``; for the usual matrix whose last axis holds a block,
  8-bit codes have exactly the parameter's shape;
* ``scales`` has shape ``lead + (ceil(T / block_size),)``.

A block never crosses a row, so sharding the parameter along any ``lead``
axis shards codes and scales along the same axis with no collective in the
update; sharding along the first ``trail`` axis works when every shard holds a
whole number of blocks (``partition_specs`` checks this). Since a row holds at
least one block, a row of ``T`` elements has at most ``2 T / block_size``
scales, so the state costs at most ``1 + 8 / block_size`` bytes per element
at 8 bits and ``0.5 + 8.5 / block_size`` at 4 bits (an odd row pads half a
byte), and exactly ``1 + 4 / block_size``, ``0.5 + 4 / block_size`` when the
rows are multiples of the block: 2.03 and 1.06 bytes per parameter for both
moments at the default block sizes.

Non-finite and tiny values. A block whose absmax is zero stores zero scale and
the code nearest zero, and dequantizes to exact zeros (never NaN). A block
that holds a NaN or an infinity gets a NaN scale and dequantizes to NaN
throughout, so a diverged moment stays visibly non-finite (optax's
``apply_if_finite`` then keeps the previous state); the other blocks are
untouched. XLA flushes float32 subnormals to zero on CPU, so a block whose
absmax is subnormal is stored as a zero block there (an absolute error below
``1.2e-38``).

References:
  Tim Dettmers, Mike Lewis, Sam Shleifer, Luke Zettlemoyer, "8-bit Optimizers
  via Block-wise Quantization", ICLR 2022.
  Tim Dettmers, "8-Bit Approximations for Parallelism in Deep Learning",
  ICLR 2016 (the dynamic data type).
  Bingrui Li, Jianfei Chen, Jun Zhu, "Memory Efficient Optimizers with 4-bit
  States", NeurIPS 2023.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

#: Arrays with fewer elements than this keep float32 moments.
MIN_QUANTIZED_SIZE = 4096

#: Block sizes used when ``block_size`` is not given, by number of bits.
DEFAULT_BLOCK_SIZE = {8: 256, 4: 128}


def dynamic_map(*, signed: bool, exponent_bits: int, total_bits: int) -> np.ndarray:
    """The dynamic quantization map, computed in float64 and rounded once.

    For ``i = 0 .. exponent_bits - 1`` the map holds the midpoints of
    ``n_i + 1`` equally spaced points in ``[0.1, 1]`` scaled by
    ``10^(i - exponent_bits + 1)``, with ``n_i = 2^(i + F)`` for a signed map
    (also negated) and ``2^(i + F + 1)`` for an unsigned one, where
    ``F = total_bits - 1 - exponent_bits``; then ``0`` and ``1``. With
    ``total_bits=8, exponent_bits=7`` this is Dettmers et al.'s 8-bit map
    (its smallest non-zero magnitude is ``1e-6 * 0.55``).

    Args:
      signed: whether the map holds negative values (first moment).
      exponent_bits: the most decimal-exponent bits.
      total_bits: bits per code; the map has ``2^total_bits`` entries.

    Returns:
      The sorted map as a float32 NumPy array of ``2^total_bits`` values.

    Raises:
      ValueError: the construction does not give ``2^total_bits`` values.

    Examples:
      >>> from adamjax._quantize import dynamic_map
      >>> m = dynamic_map(signed=True, exponent_bits=3, total_bits=4)
      >>> [round(float(v), 4) for v in m[7:]]
      [0.0, 0.0055, 0.0325, 0.0775, 0.2125, 0.4375, 0.6625, 0.8875, 1.0]
    """
    fraction_bits = total_bits - 1 - exponent_bits
    values: list[float] = [0.0, 1.0]
    for i in range(exponent_bits):
        count = 2 ** (i + fraction_bits) if signed else 2 ** (i + fraction_bits + 1)
        edges = np.linspace(0.1, 1.0, count + 1)
        magnitudes = 10.0 ** (i - exponent_bits + 1) * (edges[:-1] + edges[1:]) / 2
        values.extend(magnitudes)
        if signed:
            values.extend(-magnitudes)
    if len(values) != 2**total_bits:
        raise ValueError(
            f"`dynamic_map(exponent_bits={exponent_bits}, total_bits={total_bits})` gives "
            f"{len(values)} values, not {2**total_bits}; use exponent_bits = total_bits - 1."
        )
    return np.sort(np.asarray(values, np.float64)).astype(np.float32)


def _linear_unsigned_map(total_bits: int) -> np.ndarray:
    """``{1, 2, ..., 2^b} / 2^b``: linear, without zero."""
    levels = 2**total_bits
    return (np.arange(1, levels + 1, dtype=np.float64) / levels).astype(np.float32)


_MAPS: dict[tuple[int, bool], np.ndarray] = {
    (8, True): dynamic_map(signed=True, exponent_bits=7, total_bits=8),
    (8, False): dynamic_map(signed=False, exponent_bits=7, total_bits=8),
    (4, True): dynamic_map(signed=True, exponent_bits=3, total_bits=4),
    (4, False): _linear_unsigned_map(4),
}


def quantization_map(bits: int, signed: bool) -> np.ndarray:
    """The codebook used for ``bits`` and ``signed`` (a float32 NumPy array).

    Args:
      bits: 8 or 4.
      signed: ``True`` for the first moment's map, ``False`` for the second's.

    Returns:
      The ``2^bits`` sorted values that codes index.

    Examples:
      >>> from adamjax._quantize import quantization_map
      >>> quantization_map(4, False)[:3].tolist()
      [0.0625, 0.125, 0.1875]
    """
    _check_bits("quantization_map", bits)
    return _MAPS[(bits, bool(signed))].copy()


def _check_bits(func: str, bits: Any) -> None:
    if isinstance(bits, bool) or bits not in (4, 8):
        raise ValueError(f"`{func}(bits=...)` must be 8 or 4; got {bits!r}.")


def _checked_block_size(func: str, bits: int, block_size: Any) -> int:
    if block_size is None:
        return DEFAULT_BLOCK_SIZE[bits]
    if isinstance(block_size, bool) or not isinstance(block_size, numbers.Integral) or block_size < 1:
        raise ValueError(f"`{func}(block_size=...)` must be a positive integer or None; got {block_size!r}.")
    return int(block_size)


def _check_signed(func: str, signed: Any) -> None:
    if not isinstance(signed, bool | np.bool_):
        raise TypeError(f"`{func}(signed=...)` must be a bool; got {type(signed).__name__} {signed!r}.")


def row_split(shape: Sequence[int], block_size: int) -> int:
    """The number ``k`` of leading axes that codes and scales keep.

    ``k`` is the largest index with ``prod(shape[k:]) >= block_size`` (0 when
    the whole array is smaller than a block), so each row ``shape[k:]`` holds
    at least one block.

    Examples:
      >>> from adamjax._quantize import row_split
      >>> row_split((1024, 4096), 256), row_split((4096, 10), 256), row_split((8, 3, 3, 64), 256)
      (1, 0, 1)
    """
    shape = tuple(int(d) for d in shape)
    for k in range(len(shape), -1, -1):
        if math.prod(shape[k:]) >= block_size:
            return k
    return 0


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["codes", "scales"],
    meta_fields=["shape", "bits", "signed", "block_size"],
)
@dataclasses.dataclass(frozen=True)
class QuantizedArray:
    """A float32 array stored as blockwise-quantized codes and float32 scales.

    A pytree whose two leaves are ``codes`` (uint8) and ``scales`` (float32);
    ``shape``, ``bits``, ``signed`` and ``block_size`` are static metadata, so
    ``jit``, ``vmap``, donation, ``optax.tree`` utilities and checkpointing
    see two ordinary arrays. The layout is in this module's docstring.

    Attributes:
      codes: ``lead + (T,)`` uint8 codes at 8 bits, ``lead + (ceil(T/2),)`` at 4.
      scales: ``lead + (ceil(T / block_size),)`` float32 block absmax values.
      shape: the shape of the array the codes stand for.
      bits: 8 or 4.
      signed: which codebook (``True``: signed dynamic map).
      block_size: elements per block.
    """

    codes: jax.Array
    scales: jax.Array
    shape: tuple[int, ...]
    bits: int
    signed: bool
    block_size: int

    @property
    def dtype(self) -> jnp.dtype:
        """The dtype ``dequantize`` returns (float32)."""
        return jnp.dtype(jnp.float32)

    @property
    def size(self) -> int:
        """Elements of the array the codes stand for."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes held: codes plus scales."""
        return int(np.prod(np.shape(self.codes))) + 4 * int(np.prod(np.shape(self.scales)))


def _layout(shape: tuple[int, ...], bits: int, block_size: int) -> tuple[tuple[int, ...], int, int, int]:
    """``(lead, T, blocks_per_row, code_bytes_per_row)`` for a shape."""
    k = row_split(shape, block_size)
    lead, row = shape[:k], math.prod(shape[k:])
    blocks = -(-row // block_size)
    code_bytes = row if bits == 8 else -(-row // 2)
    return lead, row, blocks, code_bytes


def should_quantize(shape: Sequence[int] | Any, *, min_size: int = MIN_QUANTIZED_SIZE) -> bool:
    """Whether a moment of this shape (or like this array) is quantized.

    Arrays with fewer than ``min_size`` (4,096) elements keep float32 moments:
    their state is small, and per-block scales would cost relatively more.

    Args:
      shape: a shape, or an array (anything with ``.shape``).
      min_size: the least number of elements that is quantized.

    Examples:
      >>> from adamjax._quantize import should_quantize
      >>> should_quantize((64, 64)), should_quantize((100, 10))
      (True, False)
    """
    shape = getattr(shape, "shape", shape)
    return math.prod(int(d) for d in shape) >= min_size


def _search_codes(normalized: np.ndarray, table: np.ndarray) -> np.ndarray:
    """The nearest-code rule, in float32 NumPy: the entry below, or the one above where it is strictly nearer.

    ``below`` is the last entry ``<= x`` (clipped so that ``below + 1`` exists);
    the code moves up to ``below + 1`` when ``|x - map[below + 1]| < |x - map[below]|``
    in float32, so an exact tie goes to the lower index. ``_thresholds`` applies
    it to build the table that ``_nearest_codes`` looks codes up in.
    """
    x = np.asarray(normalized, np.float32)
    below = np.clip(np.searchsorted(table, x, side="right") - 1, 0, table.size - 2)
    above = below + 1
    return np.where(np.abs(x - table[above]) < np.abs(x - table[below]), above, below)


def _order_key(x: np.ndarray) -> np.ndarray:
    """Integers (int64) that compare as the float32 values do (-0 sorts just below +0)."""
    bits = np.asarray(x, np.float32).view(np.int32).astype(np.int64)
    return np.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)


def _float_of_key(key: np.ndarray) -> np.ndarray:
    key = np.asarray(key, np.int64)
    return np.where(key >= 0, key, (key ^ 0x7FFFFFFF) & 0xFFFFFFFF).astype(np.uint32).view(np.float32)


def _thresholds(table: np.ndarray) -> np.ndarray:
    """Order keys ``t_j`` (j < size - 1): the least float32 whose code is above ``j``.

    The rule's choice only grows with ``x`` (rounding is monotone), so
    ``code(x) = #{j : key(x) >= t_j}``; each ``t_j`` is found by bisection
    between ``map[j]`` and ``map[j + 1]`` with the rule itself, ties included.
    """
    j = np.arange(table.size - 1)
    if not np.array_equal(_search_codes(table, table), np.arange(table.size)):
        raise ValueError("a codebook value is not its own nearest code")
    lo, hi = _order_key(table[:-1]), _order_key(table[1:])  # code(lo) = j, code(hi) = j + 1
    while np.any(hi - lo > 1):
        mid = lo + (hi - lo) // 2
        above = _search_codes(_float_of_key(mid), table) > j
        open_ = hi - lo > 1
        hi = np.where(open_ & above, mid, hi)
        lo = np.where(open_ & ~above, mid, lo)
    return hi


# A float32 falls in a bucket by its high 16 bits (sign, exponent, 7 mantissa bits). Both
# codebooks of each size put at most one threshold in a bucket, so one int32 entry per
# bucket gives the code: `base << 23 | place`, where `place` is where the bucket's
# threshold lies among its low 16 bits (0 when it holds none), and the code is `base`,
# less one for a float whose low bits come before the threshold.
_BUCKET_SHIFT = 16
_LOW_MASK = (1 << _BUCKET_SHIFT) - 1


def _place(low: Any, negative: Any) -> Any:
    """Where a float lies within its bucket (``low``: its low bits; ``negative``: 0 or 1), rising with it in both signs.

    A negative float's order key falls as its low bits grow, so they are reversed.
    """
    return low ^ (negative * 0x7FFFFF)


@functools.cache
def _bucket_table(table_bytes: bytes) -> tuple[np.ndarray, int, int]:
    """``(entries, first, last)``: each bucket's entry, for magnitudes' buckets ``first..last``.

    ``entries`` holds the positive buckets ``first..last`` then the negative
    ones. Buckets below ``first`` (magnitudes under the smallest threshold's)
    share ``first``'s entry, and ``last`` is 1.0's bucket (a normalised value
    is at most 1), so the table is a few thousand entries, not 2^16.
    """
    table = np.frombuffer(table_bytes, np.float32)
    thresholds = _thresholds(table)
    buckets = np.arange(1 << (32 - _BUCKET_SHIFT), dtype=np.int64)
    negative = buckets >> (31 - _BUCKET_SHIFT)
    magnitude = (buckets & 0x7FFF) << _BUCKET_SHIFT
    key_lo = np.where(negative, -1 - (magnitude | _LOW_MASK), magnitude)
    key_hi = np.where(negative, -1 - magnitude, magnitude | _LOW_MASK)
    below = np.searchsorted(thresholds, key_lo, side="right")
    upto = np.searchsorted(thresholds, key_hi, side="right")
    if np.any(upto - below > 1):
        raise ValueError("a codebook's thresholds are too close for 16-bit buckets")
    threshold_bits = _float_of_key(thresholds).view(np.uint32).astype(np.int64)
    place = _place(threshold_bits & _LOW_MASK, threshold_bits >> 31)[np.minimum(below, thresholds.size - 1)]
    entries = np.where(upto > below, ((below + 1) << 23) | place, below << 23)
    half = 1 << (31 - _BUCKET_SHIFT)
    positive, negatives = entries[:half], entries[half:]
    last = int(np.float32(1.0).view(np.int32)) >> _BUCKET_SHIFT
    first = 0
    while first < last and positive[first + 1] == positive[0] and negatives[first + 1] == negatives[0]:
        first += 1
    # -0 is +0 to the rule (the search compares values): no threshold may lie between them.
    if negatives[0] >> 23 != positive[0] >> 23 or negatives[0] & 0x7FFFFF or positive[0] & 0x7FFFFF:
        raise ValueError("a codebook threshold lies at zero")
    compact = np.concatenate([positive[first : last + 1], negatives[first : last + 1]]).astype(np.int32)
    return compact, first, last


def _nearest_codes(normalized: jax.Array, table: np.ndarray) -> jax.Array:
    """Index of the nearest table entry (ties to the lower index), as ``uint8``.

    One table lookup per element (``_bucket_table``) instead of a search:
    the codes are the rule's (``_search_codes``) for every float32.
    """
    entries, first, last = _bucket_table(np.asarray(table, np.float32).tobytes())
    bits = jax.lax.bitcast_convert_type(jnp.asarray(normalized, jnp.float32), jnp.uint32)
    negative = (bits >> 31).astype(jnp.int32)
    magnitude = jnp.clip(((bits >> _BUCKET_SHIFT) & 0x7FFF).astype(jnp.int32), first, last) - first
    entry = jnp.asarray(entries)[magnitude + negative * (last - first + 1)]
    place = _place((bits & _LOW_MASK).astype(jnp.int32), negative)
    code = (entry >> 23) - ((entry & 0x7FFFFF) > place).astype(jnp.int32)
    return code.astype(jnp.uint8)


def quantize(x: jax.Array, *, bits: int, signed: bool, block_size: int | None = None) -> QuantizedArray:
    """Quantizes an array blockwise with the dynamic (or 4-bit) codebook.

    In float32: ``scale_b = max_{i in b} |x_i|``, ``code_i`` the index of the
    map value nearest ``x_i / scale_b`` (ties to the lower index). Runs inside
    ``jit`` and ``vmap``. The layout and the handling of zero, NaN, infinite
    and subnormal blocks are described in this module's docstring.

    Args:
      x: a real floating array (any float dtype; computed in float32).
      bits: 8 or 4.
      signed: ``True`` for the signed map (first moment), ``False`` for the
        unsigned one (second moment; negative inputs round to its smallest value).
      block_size: elements per block; default 256 at 8 bits, 128 at 4 bits.

    Returns:
      A ``QuantizedArray``.

    Raises:
      ValueError: ``bits`` or ``block_size`` is not allowed.
      TypeError: ``x`` is not a real floating array, or ``signed`` not a bool.

    References:
      Dettmers, Lewis, Shleifer, Zettlemoyer, "8-bit Optimizers via Block-wise
      Quantization", 2022; Li, Chen, Zhu, "Memory Efficient Optimizers with
      4-bit States", 2023.

    Examples:
      >>> import jax.numpy as jnp
      >>> from adamjax._quantize import quantize, dequantize
      >>> q = quantize(jnp.linspace(-1.0, 1.0, 300, dtype=jnp.float32), bits=8, signed=True)
      >>> q.codes.shape, q.scales.shape
      ((300,), (2,))
      >>> float(jnp.max(jnp.abs(dequantize(q) - jnp.linspace(-1.0, 1.0, 300, dtype=jnp.float32)))) < 0.01
      True
    """
    _check_bits("quantize", bits)
    _check_signed("quantize", signed)
    block_size = _checked_block_size("quantize", bits, block_size)
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"`quantize(x=...)` must be a real floating array; got dtype {dtype}.")
    return _quantize_blocks(jnp.asarray(x), bits, bool(signed), block_size)


# Compiled once per (shape, dtype, bits, map, block); inlined when called inside another jit.
@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _quantize_blocks(x: jax.Array, bits: int, signed: bool, block_size: int) -> QuantizedArray:
    shape = tuple(int(d) for d in x.shape)
    lead, row, blocks, code_bytes = _layout(shape, bits, block_size)
    rows = jnp.reshape(x.astype(jnp.float32), lead + (row,))
    padded = jnp.pad(rows, [(0, 0)] * len(lead) + [(0, blocks * block_size - row)])
    blocked = jnp.reshape(padded, lead + (blocks, block_size))
    absmax = jnp.max(jnp.abs(blocked), axis=-1)
    # Non-finite entries are found on their own: XLA's CPU max reduction may drop a NaN
    # (jax 0.10, blocks of a few thousand elements), which would hide a diverged block.
    finite = jnp.all(jnp.isfinite(blocked), axis=-1)
    scales = jnp.where(finite, absmax, jnp.float32(jnp.nan))
    positive = scales > 0
    safe = jnp.where(positive, scales, jnp.float32(1.0))
    normalized = jnp.where(positive[..., None], blocked / safe[..., None], jnp.float32(0.0))
    codes = _nearest_codes(normalized, _MAPS[(bits, signed)])
    codes = jnp.reshape(codes, lead + (blocks * block_size,))[..., :row]
    if bits == 4:
        codes = jnp.pad(codes, [(0, 0)] * len(lead) + [(0, 2 * code_bytes - row)])
        pairs = jnp.reshape(codes, lead + (code_bytes, 2))
        codes = jnp.left_shift(pairs[..., 0], jnp.uint8(4)) | pairs[..., 1]
    return QuantizedArray(codes, scales, shape, bits, signed, block_size)


def dequantize(q: QuantizedArray) -> jax.Array:
    """The float32 array a ``QuantizedArray`` stands for: ``map[code] * scale``.

    Args:
      q: the quantized array.

    Returns:
      A float32 array of shape ``q.shape``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from adamjax._quantize import quantize, dequantize
      >>> dequantize(quantize(jnp.zeros((3, 5000), jnp.float32), bits=4, signed=False)).sum()
      Array(0., dtype=float32)
    """
    if not isinstance(q, QuantizedArray):
        raise TypeError(f"`dequantize(q=...)` must be a QuantizedArray; got {type(q).__name__}.")
    return _dequantize_blocks(q)


@jax.jit
def _dequantize_blocks(q: QuantizedArray) -> jax.Array:
    lead, row, blocks, code_bytes = _layout(q.shape, q.bits, q.block_size)
    codes = q.codes
    if q.bits == 4:
        high = jnp.right_shift(codes, jnp.uint8(4))
        low = codes & jnp.uint8(15)
        codes = jnp.reshape(jnp.stack([high, low], axis=-1), lead + (2 * code_bytes,))[..., :row]
    values = jnp.take(jnp.asarray(_MAPS[(q.bits, q.signed)]), codes.astype(jnp.int32))
    values = jnp.pad(values, [(0, 0)] * len(lead) + [(0, blocks * q.block_size - row)])
    values = jnp.reshape(values, lead + (blocks, q.block_size)) * q.scales[..., None]
    return jnp.reshape(jnp.reshape(values, lead + (blocks * q.block_size,))[..., :row], q.shape)


def quantize_like(x: jax.Array, like: QuantizedArray) -> QuantizedArray:
    """Quantizes ``x`` with the bits, map and block size of ``like``.

    The step's requantization: ``quantize_like(new_mu, state.mu)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from adamjax._quantize import zeros, quantize_like
      >>> old = zeros((64, 128), bits=4, signed=True)
      >>> quantize_like(jnp.ones((64, 128), jnp.float32), old).codes.shape
      (64, 64)
    """
    if tuple(jnp.shape(x)) != like.shape:
        raise TypeError(f"`quantize_like(x=...)` has shape {tuple(jnp.shape(x))}; `like` stands for {like.shape}.")
    return quantize(x, bits=like.bits, signed=like.signed, block_size=like.block_size)


def zeros(shape: Sequence[int], *, bits: int, signed: bool, block_size: int | None = None) -> QuantizedArray:
    """A quantized array of zeros (a moment's initial state), built without a search.

    Examples:
      >>> from adamjax._quantize import zeros
      >>> q = zeros((4096,), bits=8, signed=False)
      >>> q.codes.dtype, q.scales.shape, q.nbytes
      (dtype('uint8'), (16,), 4160)
    """
    _check_bits("zeros", bits)
    _check_signed("zeros", signed)
    block_size = _checked_block_size("zeros", bits, block_size)
    shape = tuple(int(d) for d in shape)
    lead, _, blocks, code_bytes = _layout(shape, bits, block_size)
    zero_code = int(np.argmin(np.abs(_MAPS[(bits, bool(signed))])))
    byte = zero_code if bits == 8 else (zero_code << 4) | zero_code
    codes = jnp.full(lead + (code_bytes,), byte, jnp.uint8)
    scales = jnp.zeros(lead + (blocks,), jnp.float32)
    return QuantizedArray(codes, scales, shape, bits, bool(signed), block_size)


def bytes_per_element(shape: Sequence[int], *, bits: int, block_size: int | None = None) -> float:
    """State bytes per element of one quantized moment of this shape (codes + scales).

    Examples:
      >>> from adamjax._quantize import bytes_per_element
      >>> bytes_per_element((4096, 4096), bits=8), bytes_per_element((4096, 4096), bits=4)
      (1.015625, 0.53125)
    """
    _check_bits("bytes_per_element", bits)
    block_size = _checked_block_size("bytes_per_element", bits, block_size)
    shape = tuple(int(d) for d in shape)
    lead, _, blocks, code_bytes = _layout(shape, bits, block_size)
    rows = math.prod(lead)
    return rows * (code_bytes + 4 * blocks) / math.prod(shape)


def _axis_count(entry: Any, axis_sizes: Mapping[str, int]) -> int:
    names = entry if isinstance(entry, tuple) else (entry,)
    return math.prod(int(axis_sizes[name]) for name in names)


def partition_specs(q: QuantizedArray, spec: PartitionSpec, mesh: Any, *, strict: bool = False) -> QuantizedArray:
    """Partition specs that shard ``q``'s codes and scales like its parameter.

    The ``lead`` axes (see the module docstring) take the parameter's spec
    entries unchanged. The row axis takes the entry of the first trailing axis
    when it is the only sharded trailing axis and every shard holds whole
    blocks (``T / shards`` a multiple of ``block_size``, and even at 4 bits);
    then each block lives on one device and the update needs no collective.
    Otherwise the row axis is replicated (or, with ``strict``, an error).

    Args:
      q: a quantized moment (or ``zeros(...)`` of the parameter's shape).
      spec: the parameter's ``PartitionSpec``.
      mesh: a ``jax.sharding.Mesh`` or ``AbstractMesh`` (anything with a
        ``shape`` mapping axis names to sizes).
      strict: raise instead of replicating a row axis that cannot be split.

    Returns:
      A ``QuantizedArray`` whose ``codes`` and ``scales`` are ``PartitionSpec``s.

    Raises:
      ValueError: with ``strict``, the trailing axes cannot be split on block
        boundaries.

    Examples:
      >>> from jax.sharding import AbstractMesh, PartitionSpec as P
      >>> from adamjax._quantize import zeros, partition_specs
      >>> mesh = AbstractMesh((4,), ("model",))
      >>> partition_specs(zeros((512, 4096), bits=8, signed=True), P(None, "model"), mesh).scales == P(None, "model")
      True
    """
    shape = q.shape
    entries = tuple(spec) + (None,) * (len(shape) - len(tuple(spec)))
    k = row_split(shape, q.block_size)
    lead, row, _, _ = _layout(shape, q.bits, q.block_size)
    trailing = entries[k:]
    row_entry = None
    if any(e is not None for e in trailing):
        shards = _axis_count(trailing[0], mesh.shape) if trailing[0] is not None else 0
        per_shard = row // shards if shards else 0
        fits = (
            trailing[0] is not None
            and all(e is None for e in trailing[1:])
            and row % shards == 0
            and per_shard % q.block_size == 0
            and (q.bits == 8 or per_shard % 2 == 0)
        )
        if fits:
            row_entry = trailing[0]
        elif strict:
            raise ValueError(
                f"`partition_specs(spec={spec})`: the trailing axes {shape[k:]} of a {shape} moment cannot be "
                f"split into shards of whole {q.block_size}-element blocks."
            )
    # The same pytree with a PartitionSpec in place of each array (what jax.jit's shardings take).
    both = cast(Any, PartitionSpec(*entries[:k], row_entry))
    return QuantizedArray(both, both, shape, q.bits, q.signed, q.block_size)
