//! Parquet value encodings, written straight from slices: the RLE / bit-packing hybrid (for
//! definition levels and dictionary indexes), delta binary packing, byte stream split and plain.
//! Byte layouts follow the Parquet format's Encodings.md.

/// Bits needed to store every value up to `max`.
pub(crate) fn bit_width(max: u64) -> u8 {
    (64 - max.leading_zeros()) as u8
}

/// Appends `v` as an unsigned LEB128 varint.
fn uleb(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `v` zigzag encoded as a varint.
fn zigzag(v: i64, out: &mut Vec<u8>) {
    uleb(((v << 1) ^ (v >> 63)) as u64, out);
}

/// Appends `values` bit-packed LSB first, `width` bits each, then zero bits up to a whole
/// number of groups of 8 values (`width` bytes each).
fn bit_pack<T: Copy + Into<u64>>(values: &[T], width: u8, out: &mut Vec<u8>) {
    let w = usize::from(width);
    if w == 0 {
        return;
    }
    if w <= 16 {
        // One packer per width, so every shift in it is a constant.
        macro_rules! widths {
            ($($w:literal)*) => {
                match w {
                    $($w => pack_groups::<$w, T>(values, out),)*
                    _ => unreachable!("width {w} is 1 to 16"),
                }
            };
        }
        widths!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16);
        return;
    }
    let start = out.len();
    // Fewer than 64 bits wait in the accumulator when a value is added: 128 bits hold both.
    let (mut acc, mut bits) = (0u128, 0u32);
    for &v in values {
        acc |= u128::from(v.into()) << bits;
        bits += u32::from(width);
        if bits >= 64 {
            out.extend_from_slice(&(acc as u64).to_le_bytes());
            acc >>= 64;
            bits -= 64;
        }
    }
    out.extend_from_slice(&acc.to_le_bytes()[..bits.div_ceil(8) as usize]);
    out.resize(start + values.len().div_ceil(8) * w, 0);
}

/// [`bit_pack`] for a width `W` of at most 16 bits: a group of 8 values fits in 128 bits,
/// built in a register and stored whole into room made beforehand, the next group's store
/// starting `W` bytes on.
fn pack_groups<const W: usize, T: Copy + Into<u64>>(values: &[T], out: &mut Vec<u8>) {
    let start = out.len();
    let len = values.len().div_ceil(8) * W;
    out.resize(start + len + 16, 0);
    let pack = |group: &[T]| {
        let mut acc = 0u128;
        for (i, &v) in group.iter().enumerate() {
            acc |= u128::from(v.into()) << (i * W);
        }
        acc.to_le_bytes()
    };
    let mut at = start;
    let mut groups = values.chunks_exact(8);
    for group in &mut groups {
        out[at..at + 16].copy_from_slice(&pack(group));
        at += W;
    }
    out[at..at + 16].copy_from_slice(&pack(groups.remainder()));
    out.truncate(start + len);
}

/// Values per bit-packed group; a group of one repeated value starts an RLE run.
const GROUP: usize = 8;

/// Appends one RLE run: `value` (below 2^`width`) `count` times.
pub(crate) fn rle_run(value: u32, count: usize, width: u8, out: &mut Vec<u8>) {
    uleb((count as u64) << 1, out);
    out.extend_from_slice(&value.to_le_bytes()[..usize::from(width).div_ceil(8)]);
}

/// Appends `values` (each below 2^`width`) in the RLE / bit-packing hybrid encoding: values
/// are taken a group of 8 at a time; a group of one repeated value becomes an RLE run as long
/// as the value repeats, other groups are bit-packed together.
pub(crate) fn rle_hybrid(values: &[u32], width: u8, out: &mut Vec<u8>) {
    let literal = |from: usize, to: usize, out: &mut Vec<u8>| {
        if from < to {
            let groups = (to - from).div_ceil(GROUP);
            uleb(((groups as u64) << 1) | 1, out);
            bit_pack(&values[from..to], width, out);
        }
    };
    let (mut start, mut i) = (0, 0);
    while let Some(group) = values.get(i..i + GROUP) {
        let v = group[0];
        // Tested without a branch per value (in random keys a mismatch comes at no set place).
        if group.iter().fold(0, |a, &x| a | (x ^ v)) == 0 {
            let end = i + GROUP + values[i + GROUP..].iter().take_while(|&&x| x == v).count();
            literal(start, i, out);
            rle_run(v, end - i, width, out);
            (start, i) = (end, end);
        } else {
            i += GROUP;
        }
    }
    literal(start, values.len(), out);
}

/// Appends `len` values of width 1, given as bits LSB first (Arrow's bitmap layout), as
/// [`rle_hybrid`] encodes them, read 8 at a time: a byte of 8 equal bits starts an RLE run as
/// long as the bit repeats, other bytes are bit-packed together (bits past `len` cleared).
pub(crate) fn rle_bits(bits: &[u8], len: usize, out: &mut Vec<u8>) {
    // The 8 values from value `i` on, as one byte.
    let byte_at = |i: usize| -> u8 {
        let (q, r) = (i / 8, i % 8);
        let next = match r {
            0 => 0,
            _ => bits.get(q + 1).map_or(0, |&b| b << (8 - r)),
        };
        let byte = bits[q] >> r | next;
        match len - i {
            left if left < 8 => byte & ((1u8 << left) - 1),
            _ => byte,
        }
    };
    let literal = |from: usize, to: usize, out: &mut Vec<u8>| {
        if from < to {
            uleb(((((to - from).div_ceil(GROUP)) as u64) << 1) | 1, out);
            out.extend((from..to).step_by(GROUP).map(byte_at));
        }
    };
    let (mut start, mut i) = (0, 0);
    while i + GROUP <= len {
        let b = byte_at(i);
        if b == 0 || b == 0xFF {
            let mut end = i + GROUP;
            while end + GROUP <= len && byte_at(end) == b {
                end += GROUP;
            }
            if end < len {
                // The run goes on into the next byte for as many of its bits as repeat it.
                let next = byte_at(end) ^ b;
                end += (next.trailing_zeros() as usize).min(len - end);
            }
            literal(start, i, out);
            rle_run(u32::from(b & 1), end - i, 1, out);
            (start, i) = (end, end);
        } else {
            i += GROUP;
        }
    }
    literal(start, len, out);
}

/// Values per delta block, and miniblocks per block (32 values each).
const DELTA_BLOCK: usize = 128;
const DELTA_MINIBLOCKS: usize = 4;

/// Appends `values` in the DELTA_BINARY_PACKED encoding (wrapping arithmetic, as the format
/// specifies).
pub(crate) fn delta_binary_packed(values: &[i64], out: &mut Vec<u8>) {
    uleb(DELTA_BLOCK as u64, out);
    uleb(DELTA_MINIBLOCKS as u64, out);
    uleb(values.len() as u64, out);
    zigzag(values.first().copied().unwrap_or(0), out);
    let mini = DELTA_BLOCK / DELTA_MINIBLOCKS;
    let mut deltas = [0i64; DELTA_BLOCK];
    let mut packed = [0u64; DELTA_BLOCK];
    for start in (1..values.len()).step_by(DELTA_BLOCK) {
        let end = (start + DELTA_BLOCK).min(values.len());
        for (d, i) in deltas.iter_mut().zip(start..end) {
            *d = values[i].wrapping_sub(values[i - 1]);
        }
        let deltas = &deltas[..end - start];
        let min = deltas.iter().copied().min().unwrap_or(0);
        zigzag(min, out);
        // Each miniblock is always whole: the last one is padded to its full length.
        packed.fill(0);
        for (p, d) in packed.iter_mut().zip(deltas) {
            *p = d.wrapping_sub(min) as u64;
        }
        let used = deltas.len().div_ceil(mini);
        let widths: [u8; DELTA_MINIBLOCKS] = std::array::from_fn(|m| match m < used {
            true => bit_width(
                packed[m * mini..(m + 1) * mini]
                    .iter()
                    .fold(0, |a, &p| a | p),
            ),
            false => 0,
        });
        out.extend_from_slice(&widths);
        for (m, &width) in widths.iter().enumerate().take(used) {
            bit_pack(&packed[m * mini..(m + 1) * mini], width, out);
        }
    }
}

/// A fixed-width value as its little-endian bytes.
pub(crate) trait LeBytes: Copy {
    /// Its byte width.
    const WIDTH: usize;
    /// Appends its little-endian bytes.
    fn put(self, out: &mut Vec<u8>);
}

macro_rules! le_bytes {
    ($($t:ty),*) => {$(
        impl LeBytes for $t {
            const WIDTH: usize = std::mem::size_of::<$t>();
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
le_bytes!(i32, u32, i64);

/// Appends `values` PLAIN encoded.
pub(crate) fn plain<T: LeBytes>(values: &[T], out: &mut Vec<u8>) {
    out.reserve(values.len() * T::WIDTH);
    for &v in values {
        v.put(out);
    }
}

/// Appends `values` BYTE_STREAM_SPLIT encoded: byte k of every value, then byte k + 1, ….
pub(crate) fn byte_stream_split<T: LeBytes>(values: &[T], out: &mut Vec<u8>) {
    let mut plain_bytes = Vec::with_capacity(values.len() * T::WIDTH);
    plain(values, &mut plain_bytes);
    let at = out.len();
    out.resize(at + plain_bytes.len(), 0);
    // Each value's bytes scattered to their streams: every stream is written front to back.
    let streams = &mut out[at..];
    for (i, bytes) in plain_bytes.chunks_exact(T::WIDTH).enumerate() {
        for (k, &b) in bytes.iter().enumerate() {
            streams[k * values.len() + i] = b;
        }
    }
}

/// Appends byte strings PLAIN encoded (each length-prefixed).
pub(crate) fn plain_bytes<'a>(values: impl Iterator<Item = &'a [u8]> + Clone, out: &mut Vec<u8>) {
    out.reserve(values.clone().map(|v| 4 + v.len()).sum());
    for v in values {
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
}

/// Appends byte strings DELTA_LENGTH_BYTE_ARRAY encoded: the delta-packed lengths, then the
/// bytes.
pub(crate) fn delta_length_bytes(values: &[&[u8]], out: &mut Vec<u8>) {
    let lengths: Vec<i64> = values.iter().map(|v| v.len() as i64).collect();
    delta_binary_packed(&lengths, out);
    out.reserve(lengths.iter().sum::<i64>() as usize);
    for v in values {
        out.extend_from_slice(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rle_hybrid_packs_literals_and_runs() {
        // 3 literals borrow 5 values of the run to make a group; 10 repeats stay an RLE run.
        let values = [1, 2, 3, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7];
        let mut out = Vec::new();
        rle_hybrid(&values, 3, &mut out);
        // header (1 group, bit-packed), 3 bytes of packed values, header (run of 10), value.
        assert_eq!(out[0], 0b11);
        assert_eq!(out.len(), 1 + 3 + 1 + 1);
        assert_eq!(out[4], 10 << 1);
        assert_eq!(out[5], 7);
    }

    #[test]
    fn bit_pack_matches_packing_bit_by_bit() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for width in 1..=20u8 {
            for len in [1usize, 7, 8, 9, 64, 1001] {
                let values: Vec<u32> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        (x % (1 << width)) as u32
                    })
                    .collect();
                // Bit i of the output is bit (i mod width) of value (i / width), LSB first.
                let mut expected = vec![0u8; len.div_ceil(8) * usize::from(width)];
                for (n, &v) in values.iter().enumerate() {
                    for b in 0..usize::from(width) {
                        let bit = n * usize::from(width) + b;
                        expected[bit / 8] |= (((v >> b) & 1) as u8) << (bit % 8);
                    }
                }
                let mut out = vec![0xAA];
                bit_pack(&values, width, &mut out);
                assert_eq!(out[0], 0xAA, "bytes before it untouched");
                assert_eq!(out[1..], expected[..], "width {width}, {len} values");
            }
        }
    }

    /// Bits given as bytes encode as the same levels given one per value do, and decode back,
    /// whatever bytes follow them in the bitmap (the rest of a chunk's rows).
    #[test]
    fn rle_bits_encodes_as_rle_hybrid_and_decodes_to_its_bits() {
        // A decoder of the hybrid encoding for width 1, as a reader applies it.
        let decode = |mut enc: &[u8]| {
            let mut bits = Vec::new();
            while !enc.is_empty() {
                let (mut header, mut shift) = (0usize, 0);
                while let [b, rest @ ..] = enc {
                    enc = rest;
                    header |= usize::from(b & 0x7F) << shift;
                    shift += 7;
                    if b & 0x80 == 0 {
                        break;
                    }
                }
                if header & 1 == 1 {
                    let (packed, rest) = enc.split_at(header >> 1);
                    bits.extend(
                        packed
                            .iter()
                            .flat_map(|b| (0..8).map(move |i| b >> i & 1 == 1)),
                    );
                    enc = rest;
                } else {
                    bits.extend(std::iter::repeat_n(enc[0] == 1, header >> 1));
                    enc = &enc[1..];
                }
            }
            bits
        };
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in [1usize, 7, 8, 9, 63, 64, 65, 1000, 8192] {
            // Random bits, long runs of each, and runs broken by single bits.
            for pattern in 0..3 {
                let bits: Vec<bool> = (0..len)
                    .map(|i| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        match pattern {
                            0 => x & 1 == 1,
                            1 => (i / 100) % 2 == 0,
                            _ => !x.is_multiple_of(50),
                        }
                    })
                    .collect();
                let mut packed = vec![0xFFu8; len.div_ceil(8)];
                for (i, &b) in bits.iter().enumerate() {
                    if !b {
                        packed[i / 8] &= !(1 << (i % 8));
                    }
                }
                let mut out = Vec::new();
                rle_bits(&packed, len, &mut out);
                let levels: Vec<u32> = bits.iter().map(|&b| u32::from(b)).collect();
                let mut hybrid = Vec::new();
                rle_hybrid(&levels, 1, &mut hybrid);
                assert_eq!(out, hybrid, "len {len}, pattern {pattern}: as rle_hybrid");
                let mut longer = packed.clone();
                longer.extend([0xFF, 0x5A, 0xFF]);
                let mut again = Vec::new();
                rle_bits(&longer, len, &mut again);
                assert_eq!(again, out, "len {len}, pattern {pattern}: more bytes after");
                let decoded = decode(&out);
                assert_eq!(decoded[..len], bits[..], "len {len}, pattern {pattern}");
                assert!(decoded[len..].iter().all(|&b| !b), "padding cleared");
            }
        }
    }

    #[test]
    fn bit_width_counts_bits() {
        assert_eq!(bit_width(0), 0);
        assert_eq!(bit_width(1), 1);
        assert_eq!(bit_width(255), 8);
        assert_eq!(bit_width(u64::MAX), 64);
    }
}
