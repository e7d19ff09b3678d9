//! §7.5–7.6: the range-asymmetric-numeral-system (rANS) coder of version 1.1 tiles, and the
//! distributions it codes with (§7.6, the `CMOD` section).
//!
//! Several coder states ("lanes") share one stream of 16-bit words; each symbol names its lane.
//! The writer codes symbols in reverse order, the reader in forward order, so the words one
//! lane's decoding reads are exactly those its encoding wrote, wherever the other lanes' fall.

/// §7.5: probabilities are multiples of `2^-PROB_BITS`.
pub const PROB_BITS: u32 = 10;
/// §7.5: `2^PROB_BITS`.
pub const PROB_SCALE: u32 = 1 << PROB_BITS;
/// §7.5: the lower bound of a normalized coder state, and the state every lane starts (writer)
/// and ends (reader) with.
pub const STATE_LOW: u32 = 1 << 16;

/// §7.6: tokens of the hybrid integer code (values below 16 are their own token; above,
/// an exponent and one mantissa bit, the other bits coded raw).
pub const TOKENS: usize = 72;

/// §7.6: the token of `v`, its raw bits and their count.
#[inline]
pub fn tokenize(v: u32) -> (u32, u32, u32) {
    if v < 16 {
        (v, 0, 0)
    } else {
        let n = 31 - v.leading_zeros(); // 4..=31
        let token = 16 + 2 * (n - 4) + ((v >> (n - 1)) & 1);
        let nbits = n - 1;
        (token, v & ((1 << nbits) - 1), nbits)
    }
}

#[cfg(test)]
/// §7.6: the value of `token` with raw bits `raw` (`nbits` of them, see [`token_bits`]).
#[inline]
pub fn untokenize(token: u32, raw: u32) -> u32 {
    if token < 16 {
        token
    } else {
        let n = (token - 16) / 2 + 4;
        let top = 2 | ((token - 16) & 1);
        (top << (n - 1)) | raw
    }
}

#[cfg(test)]
/// §7.6: raw bits that follow `token`.
#[inline]
pub fn token_bits(token: u32) -> u32 {
    if token < 16 { 0 } else { (token - 16) / 2 + 3 }
}

/// One distribution of §7.6: the frequency of each token, summing to [`PROB_SCALE`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dist {
    /// Frequencies; empty for a distribution the file never codes with.
    pub freq: Vec<u16>,
    /// The token whose frequency is implied (the rest of [`PROB_SCALE`]); the others are
    /// storable values (§7.6).
    pub implied: usize,
}

/// The frequency a 4-bit exponent `e` and its mantissa bits stand for (§7.6).
fn freq_of(e: u32, mant: u32) -> u32 {
    if e == 0 {
        return 0;
    }
    let k = (e - 1).min(3);
    ((1 << k) | mant) << (e - 1 - k)
}

/// The largest frequency not above `f` that §7.6 can store, as (exponent, mantissa).
fn freq_code_floor(f: u32) -> (u32, u32) {
    if f == 0 {
        return (0, 0);
    }
    let e = 32 - f.leading_zeros(); // bit length
    let k = (e - 1).min(3);
    let mant = (f >> (e - 1 - k)) & ((1 << k) - 1);
    (e, mant)
}

/// MSB-first bit writer (§7.6).
#[derive(Default)]
pub(crate) struct BitWriter {
    bytes: Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitWriter {
    pub(crate) fn put(&mut self, v: u32, bits: u32) {
        debug_assert!(bits <= 24 && (bits == 32 || v >> bits == 0));
        self.acc = (self.acc << bits) | v as u64;
        self.n += bits;
        while self.n >= 8 {
            self.n -= 8;
            self.bytes.push((self.acc >> self.n) as u8);
        }
    }

    /// Writes `bits` (at most 32) bits of `v`.
    pub(crate) fn put_long(&mut self, v: u32, bits: u32) {
        if bits > 16 {
            self.put(v >> 16, bits - 16);
            self.put(v & 0xffff, 16);
        } else {
            self.put(v, bits);
        }
    }

    /// Bits written so far.
    pub(crate) fn bits(&self) -> usize {
        self.bytes.len() * 8 + self.n as usize
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.bytes.push((self.acc << (8 - self.n)) as u8);
        }
        self.bytes
    }
}

/// MSB-first bit reader; reading past the end is an error (`None`).
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    pub(crate) fn get(&mut self, bits: u32) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..bits {
            let byte = *self.data.get(self.pos / 8)?;
            v = (v << 1) | ((byte >> (7 - self.pos % 8)) & 1) as u32;
            self.pos += 1;
        }
        Some(v)
    }

    /// Bits read so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Moves to bit `pos`.
    pub(crate) fn seek(&mut self, pos: usize) {
        self.pos = pos;
    }

    /// Bytes read, counting a partly read byte; and whether its unread bits are all zero.
    pub(crate) fn end(&self) -> (usize, bool) {
        let used = self.pos.div_ceil(8);
        let pad_zero = self.pos.is_multiple_of(8) || {
            let byte = self.data[self.pos / 8];
            byte & ((1u8 << (8 - self.pos % 8)) - 1) == 0
        };
        (used, pad_zero)
    }
}

impl Dist {
    /// Normalizes token counts into frequencies the `CMOD` section can store exactly: every
    /// counted token gets at least 1, the most frequent one takes what the others leave.
    pub fn from_counts(counts: &[u64]) -> Dist {
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return Dist::default();
        }
        let len = counts.iter().rposition(|&c| c > 0).unwrap() + 1;
        let counts = &counts[..len];
        let top = (0..len)
            .max_by_key(|&i| (counts[i], usize::MAX - i))
            .unwrap();
        let mut freq = vec![0u32; len];
        if len > 1 {
            for (i, &c) in counts.iter().enumerate() {
                if i != top && c > 0 {
                    let ideal = (c as f64 * PROB_SCALE as f64 / total as f64).max(1.0);
                    // Nearest storable value at or below the ideal (storable values are 1, 2,
                    // 3, then four significant bits).
                    let (e, m) = freq_code_floor(ideal as u32);
                    let lo = freq_of(e, m);
                    let (e2, m2) = freq_code_floor(lo + (1 << (e - 1 - (e - 1).min(3))));
                    let hi = freq_of(e2, m2);
                    freq[i] = if (ideal - lo as f64) > (hi as f64 - ideal) {
                        hi
                    } else {
                        lo
                    };
                }
            }
            // The top token keeps at least half its share (and at least 1): while the others
            // leave it less, the largest of them steps down to the next storable value.
            let want_top = ((counts[top] as f64 * PROB_SCALE as f64 / total as f64) as u32 / 2)
                .clamp(1, PROB_SCALE / 2);
            while freq.iter().sum::<u32>() - freq[top] > PROB_SCALE - want_top {
                let big = (0..len)
                    .filter(|&i| i != top)
                    .max_by_key(|&i| freq[i])
                    .unwrap();
                let (e, m) = freq_code_floor(freq[big] - 1);
                freq[big] = freq_of(e, m).max(1);
            }
            let rest: u32 = freq.iter().sum::<u32>() - freq[top];
            freq[top] = PROB_SCALE - rest;
        } else {
            freq[0] = PROB_SCALE;
        }
        Dist {
            freq: freq.into_iter().map(|f| f as u16).collect(),
            implied: top,
        }
    }

    /// Cost in bits of coding `token` with this distribution (without its raw bits).
    pub fn cost(&self, token: u32) -> f64 {
        match self.freq.get(token as usize) {
            Some(&f) if f > 0 => PROB_BITS as f64 - (f as f64).log2(),
            _ => f64::INFINITY,
        }
    }

    /// Bits the `CMOD` section takes to store it (with its flag bit).
    pub fn stored_bits(&self) -> usize {
        let mut w = BitWriter::default();
        self.write(&mut w);
        w.bits() + 1
    }

    /// Bits that coding these token counts with this distribution takes (raw bits aside).
    pub fn coded_bits(&self, counts: &[u64]) -> f64 {
        counts
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c > 0)
            .map(|(t, &c)| c as f64 * self.cost(t as u32))
            .sum()
    }

    /// Writes the distribution as §7.6 stores it.
    pub(crate) fn write(&self, w: &mut BitWriter) {
        let n = self.freq.len() as u32;
        w.put(n, 7);
        if n < 2 {
            return;
        }
        let top = self.implied;
        w.put(top as u32, 7);
        for (i, &f) in self.freq.iter().enumerate() {
            if i != top {
                let (e, m) = freq_code_floor(f as u32);
                debug_assert_eq!(freq_of(e, m), f as u32, "unstorable frequency");
                w.put(e, 4);
                if e >= 2 {
                    w.put(m, (e - 1).min(3));
                }
            }
        }
    }

    /// Reads a distribution (§7.6); `Err` names what is wrong.
    pub(crate) fn read(r: &mut BitReader) -> Result<Dist, String> {
        let eof = || "the distributions end early".to_string();
        let n = r.get(7).ok_or_else(eof)?;
        if n as usize > TOKENS {
            return Err(format!("alphabet of {n} tokens (at most {TOKENS})"));
        }
        match n {
            0 => return Err("an alphabet of 0 tokens (an unused distribution has flag 0)".into()),
            1 => {
                return Ok(Dist {
                    freq: vec![PROB_SCALE as u16],
                    implied: 0,
                });
            }
            _ => {}
        }
        let top = r.get(7).ok_or_else(eof)?;
        if top >= n {
            return Err(format!("implied token {top} of {n}"));
        }
        let mut freq = vec![0u16; n as usize];
        let mut rest = 0u32;
        for (i, f) in freq.iter_mut().enumerate() {
            if i as u32 == top {
                continue;
            }
            let e = r.get(4).ok_or_else(eof)?;
            if e > PROB_BITS {
                return Err(format!("frequency exponent {e} (at most {PROB_BITS})"));
            }
            let m = if e >= 2 {
                r.get((e - 1).min(3)).ok_or_else(eof)?
            } else {
                0
            };
            *f = freq_of(e, m) as u16;
            rest += *f as u32;
        }
        if rest >= PROB_SCALE {
            return Err(format!(
                "frequencies add up to {rest}, leaving none of {PROB_SCALE} to the implied token"
            ));
        }
        freq[top as usize] = (PROB_SCALE - rest) as u16;
        Ok(Dist {
            freq,
            implied: top as usize,
        })
    }

    /// The decoding table of §7.5: per slot, all that decoding it needs (see [`Tables`]). An
    /// unused distribution decodes every slot to the invalid token [`TOKENS`], leaving the
    /// state as it is.
    pub(crate) fn tables(&self) -> Tables {
        let mut slots = [0u32; PROB_SCALE as usize];
        if self.freq.is_empty() {
            for (s, e) in slots.iter_mut().enumerate() {
                *e = Tables::entry(TOKENS as u32, PROB_SCALE, s as u32);
            }
        }
        let mut c = 0usize;
        for (t, &f) in self.freq.iter().enumerate() {
            let token = Tables::entry(t as u32, f as u32, 0);
            for (b, e) in slots[c..c + f as usize].iter_mut().enumerate() {
                *e = token | ((b as u32) << 10);
            }
            c += f as usize;
        }
        Tables { slots }
    }

    /// Cumulative frequency of each token (encoder).
    pub(crate) fn starts(&self) -> Vec<u16> {
        let mut c = 0u16;
        self.freq
            .iter()
            .map(|&f| {
                let s = c;
                c += f;
                s
            })
            .collect()
    }
}

/// The most lanes a tile has (§7.4: 6 + 4 channels).
pub const MAX_LANES: usize = 10;

/// §7.6: the raw bit count of each token.
const fn token_bits_of(t: u32) -> u32 {
    if t < 16 { 0 } else { (t - 16) / 2 + 3 }
}

/// §7.6: per token, its value without raw bits; tokens 72 and above (never decoded from a
/// valid distribution) decode to a value above every range.
const fn token_base() -> [u32; 128] {
    let mut t = [u32::MAX; 128];
    let mut i = 0;
    while i < TOKENS {
        t[i] = if i < 16 {
            i as u32
        } else {
            (2 | ((i as u32 - 16) & 1)) << token_bits_of(i as u32)
        };
        i += 1;
    }
    t
}
static TOKEN_BASE: [u32; 128] = token_base();

/// One coded step for the writer: lane, start and frequency (in units of `2^-PROB_BITS`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Step {
    pub lane: u8,
    pub start: u16,
    pub freq: u16,
}

/// §7.5: the coded data of a tile from its steps (in decoding order), `lanes` states, and its
/// raw bits (in decoding order).
pub(crate) fn encode(steps: &[Step], lanes: usize, raw: BitWriter) -> Vec<u8> {
    let mut x = vec![STATE_LOW; lanes];
    let mut words: Vec<u16> = Vec::with_capacity(steps.len() / 2 + 8);
    for s in steps.iter().rev() {
        let st = &mut x[s.lane as usize];
        let f = s.freq as u32;
        if f == PROB_SCALE {
            continue; // a certain token: decoding it leaves the state as it is
        }
        let x_max = ((STATE_LOW >> PROB_BITS) << 16) * f;
        if *st >= x_max {
            words.push(*st as u16);
            *st >>= 16;
        }
        *st = ((*st / f) << PROB_BITS) + (*st % f) + s.start as u32;
    }
    let raw = raw.finish();
    let mut out = Vec::with_capacity(4 + lanes * 4 + words.len() * 2 + raw.len());
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    for v in &x {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for w in words.iter().rev() {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.extend_from_slice(&raw);
    out
}

/// The decoding table of one distribution (see [`Dist::tables`]): for each slot (the low
/// [`PROB_BITS`] bits of a state) its token (bits 25–31), the token's raw bit count (bits
/// 20–24), the slot's offset in the token's range (bits 10–19) and the token's frequency
/// less one (bits 0–9). One load gives a decoding step all it needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tables {
    pub slots: [u32; PROB_SCALE as usize],
}

impl Tables {
    /// The entry of a slot `offset` into the range of token `t` of frequency `f`.
    fn entry(t: u32, f: u32, offset: u32) -> u32 {
        debug_assert!((1..=PROB_SCALE).contains(&f) && offset < f && t < 128);
        // The invalid token reads no raw bits.
        let n = if t < TOKENS as u32 {
            token_bits_of(t)
        } else {
            0
        };
        (t << 25) | (n << 20) | (offset << 10) | (f - 1)
    }
}

/// §7.5: the reader's side. Reads past the end of the words or the raw bits give zeros;
/// [`Decoder::finish`] reports them.
pub(crate) struct Decoder<'a> {
    words: Vec<u16>,
    pos: usize,
    pub(crate) x: [u32; MAX_LANES],
    raw: &'a [u8],
    /// Bytes of `raw` taken into `acc` (past its end: zero bytes, counted).
    raw_pos: usize,
    /// Raw bits not yet read, most significant first.
    acc: u64,
    /// Bits of `acc` not yet read.
    acc_bits: u32,
}

impl<'a> Decoder<'a> {
    /// Starts decoding a tile's coded data (§7.4) with `lanes` (at most [`MAX_LANES`]) states;
    /// `Err` says why the data cannot hold them.
    pub(crate) fn new(data: &'a [u8], lanes: usize) -> Result<Self, String> {
        let head = 4 + lanes * 4;
        if data.len() < head {
            return Err("shorter than its raw length and coder states".into());
        }
        let raw_len = u32::from_le_bytes(data[..4].try_into().unwrap()) as usize;
        if raw_len > data.len() - head || !(data.len() - head - raw_len).is_multiple_of(2) {
            return Err(format!(
                "{raw_len} bytes of raw bits do not leave whole words in {} bytes",
                data.len() - head
            ));
        }
        let mut x = [STATE_LOW; MAX_LANES];
        for (i, v) in x.iter_mut().take(lanes).enumerate() {
            *v = u32::from_le_bytes(data[4 + i * 4..8 + i * 4].try_into().unwrap());
        }
        let words = data[head..data.len() - raw_len]
            .chunks_exact(2)
            .map(|w| u16::from_le_bytes([w[0], w[1]]))
            .collect();
        Ok(Decoder {
            words,
            pos: 0,
            x,
            raw: &data[data.len() - raw_len..],
            raw_pos: 0,
            acc: 0,
            acc_bits: 0,
        })
    }

    /// Decodes one value of lane `lane` (§7.5–7.6): its token with `t`, then its raw bits.
    /// An invalid token (of an unused distribution) gives `u32::MAX`.
    #[inline(always)]
    pub(crate) fn value(&mut self, lane: usize, t: &Tables) -> u32 {
        let x = self.x[lane];
        let e = t.slots[(x & (PROB_SCALE - 1)) as usize];
        // x' = f·⌊x / 2^PROB_BITS⌋ + (x mod 2^PROB_BITS) − start.
        let x = ((e & 0x3ff) + 1) * (x >> PROB_BITS) + ((e >> 10) & 0x3ff);
        // Renormalization: a word when the state fell below STATE_LOW (past the end: 0).
        let need = x < STATE_LOW;
        let w = self.words.get(self.pos).copied().unwrap_or(0) as u32;
        self.pos += need as usize;
        self.x[lane] = if need { (x << 16) | w } else { x };
        let base = TOKEN_BASE[(e >> 25) as usize];
        base.wrapping_add(self.raw_bits((e >> 20) & 31))
    }

    /// `n` (at most 31) raw bits, most significant first.
    #[inline(always)]
    fn raw_bits(&mut self, n: u32) -> u32 {
        if self.acc_bits < 32 {
            self.refill();
        }
        let v = ((self.acc >> 32) >> (32 - n)) as u32;
        self.acc <<= n;
        self.acc_bits -= n;
        v
    }

    /// Fills `acc` with at least 57 bits: the next 8 bytes in one read where there are 8
    /// (the bits of a byte only partly taken are ORed in again, the same, next time).
    #[inline(always)]
    fn refill(&mut self) {
        match self.raw.get(self.raw_pos..self.raw_pos + 8) {
            Some(b) => {
                self.acc |= u64::from_be_bytes(b.try_into().unwrap()) >> self.acc_bits;
                let take = (64 - self.acc_bits) / 8;
                self.raw_pos += take as usize;
                self.acc_bits += 8 * take;
            }
            None => self.refill_end(),
        }
    }

    /// [`Self::refill`] near the end of the raw bits, a byte at a time.
    #[cold]
    #[inline(never)]
    fn refill_end(&mut self) {
        while self.acc_bits <= 56 {
            let b = self.raw.get(self.raw_pos).copied().unwrap_or(0);
            self.acc |= (b as u64) << (56 - self.acc_bits);
            self.raw_pos += 1;
            self.acc_bits += 8;
        }
    }

    /// §7.5: the words and the raw bits must be used up exactly (the last raw byte's unread
    /// bits zero) and every lane back at [`STATE_LOW`].
    pub(crate) fn finish(&self, lanes: usize) -> Result<(), String> {
        if self.pos > self.words.len() {
            return Err("the coded words end early".into());
        }
        if self.pos < self.words.len() {
            return Err(format!(
                "{} words after the coded values",
                self.words.len() - self.pos
            ));
        }
        let have = self.raw.len() as u64 * 8;
        let read = self.raw_pos as u64 * 8 - self.acc_bits as u64;
        if read > have {
            return Err("the raw bits end early".into());
        }
        if read.div_ceil(8) != self.raw.len() as u64 {
            return Err(format!(
                "{} bytes of raw bits after the coded values",
                self.raw.len() as u64 - read.div_ceil(8)
            ));
        }
        let pad = (have - read) as u32;
        if pad > 0 && self.raw[self.raw.len() - 1] & ((1u8 << pad) - 1) != 0 {
            return Err("raw padding bits set".into());
        }
        if let Some(l) = (0..lanes).find(|&l| self.x[l] != STATE_LOW) {
            return Err(format!("lane {l} ends in state {:#x}", self.x[l]));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for v in (0..70_000u32).chain([u32::MAX, u32::MAX - 1, 1 << 31, (1 << 31) - 1]) {
            let (t, raw, n) = tokenize(v);
            assert!((t as usize) < TOKENS, "{v}");
            assert_eq!(token_bits(t), n);
            assert_eq!(untokenize(t, raw), v);
        }
    }

    #[test]
    fn storable_frequencies_round_trip() {
        for f in 0..PROB_SCALE {
            let (e, m) = freq_code_floor(f);
            let g = freq_of(e, m);
            assert!(g <= f && (f == 0 || g > 0), "{f} -> {g}");
            if f < 16 {
                assert_eq!(g, f);
            }
        }
    }

    #[test]
    fn distributions_normalize_and_round_trip() {
        let cases: Vec<Vec<u64>> = vec![
            vec![5],
            vec![0, 0, 7],
            vec![1000, 1, 1, 1, 0, 3],
            (0..72).map(|i| 1 + (i * 7919) % 100).collect(),
            (0..72)
                .map(|i| if i == 40 { 1_000_000 } else { 1 })
                .collect(),
        ];
        for counts in cases {
            let d = Dist::from_counts(&counts);
            assert_eq!(d.freq.iter().map(|&f| f as u32).sum::<u32>(), PROB_SCALE);
            for (c, f) in counts.iter().zip(&d.freq) {
                assert_eq!(*c > 0, *f > 0, "{counts:?} -> {:?}", d.freq);
            }
            let mut w = BitWriter::default();
            d.write(&mut w);
            let bytes = w.finish();
            let back = Dist::read(&mut BitReader::new(&bytes)).unwrap();
            assert_eq!(back, d);
        }
    }

    #[test]
    fn lanes_round_trip() {
        let counts: Vec<u64> = (0..TOKENS as u64).map(|t| 1 + 1000 / (1 + t * t)).collect();
        let d = Dist::from_counts(&counts);
        let starts = d.starts();
        let tables = d.tables();
        let mut seed = 12345u32;
        let mut rnd = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            seed >> 8
        };
        let mut steps = Vec::new();
        let mut raw = BitWriter::default();
        let mut expect = Vec::new();
        for _ in 0..5000 {
            let lane = (rnd() % 3) as u8;
            let v = match rnd() % 4 {
                0 => rnd() % 16,
                1 => rnd() % 70_000,
                2 => (rnd() << 8) | (rnd() % 256),
                _ => rnd() % 300,
            };
            let (t, bits, n) = tokenize(v);
            steps.push(Step {
                lane,
                start: starts[t as usize],
                freq: d.freq[t as usize],
            });
            if n > 0 {
                raw.put_long(bits, n);
            }
            expect.push((lane, v));
        }
        let bytes = encode(&steps, 3, raw);
        let mut dec = Decoder::new(&bytes, 3).unwrap();
        for (lane, v) in expect {
            assert_eq!(dec.value(lane as usize, &tables), v);
        }
        dec.finish(3).unwrap();
        // A byte more or less anywhere is an error.
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Decoder::new(&longer, 3).is_err());
    }
}
