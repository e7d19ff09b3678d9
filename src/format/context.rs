//! §7.4: the context model of version 1.1 tiles: which value of which Gaussian is coded, in
//! which lane, with which distribution. The writer and the reader walk a tile with the same
//! function ([`walk`]), so they cannot disagree on an order or a context.

use super::header::Header;
use super::quant::{CODE_CH, CODE_ROT, CODE_S1, CODE_S2, CODE_X, CODE_Y, Quantized};
use super::rans::{self, BitReader, BitWriter, Dist, PROB_SCALE, Step, TOKENS};
use super::tile::TileCells;

/// §7.4: the distributions, in the order the `CMOD` section stores them.
pub const D_COUNT: usize = 0; // 6: neighbours' counts
pub const D_POS_Y_FIRST: usize = 6; // 4: the cell's count
pub const D_POS_Y_NEXT: usize = 10; // 4: Gaussians left in the cell
pub const D_POS_X: usize = 14;
pub const D_POS_X_SAME: usize = 15;
pub const D_SCALE: usize = 16; // 21: activity × the cell's count
pub const D_DIFF: usize = 37; // 6: predicted difference
pub const D_ROT: usize = 43; // 8: anisotropy, with / without predictor
pub const D_CH0: usize = 51; // 7: activity
pub const D_CH1: usize = 58; // 21: activity × residual of channel 0
pub const D_CH2: usize = 79; // 21: activity × residual of channel 1
pub const D_ALPHA: usize = 100; // 7: activity
/// Number of distributions.
pub const DISTS: usize = 107;

/// §7.6 `flags` bit 0: rotations are coded as residuals from a neighbour's (else as values).
pub const FLAG_PREDICT_ROTATION: u8 = 1;
/// §7.6 `flags` bit 1: channel codes are coded as values (the prediction only picks contexts).
pub const FLAG_CHANNEL_VALUES: u8 = 2;
/// §7.6 `flags` bit 2: σ₁ codes are coded as values (the prediction only picks contexts).
pub const FLAG_SCALE_VALUES: u8 = 4;
/// The flags this reader knows.
const FLAGS_KNOWN: u8 = FLAG_PREDICT_ROTATION | FLAG_CHANNEL_VALUES | FLAG_SCALE_VALUES;

/// Without a prediction: a value coded as it is.
const NO_PRED: Pred = Pred {
    n: 0,
    value: 0,
    spread: 0,
};

/// §7.6: the alphabet size that marks a distribution as a copy of an earlier one.
const COPY: u32 = 127;

/// §7.4: lanes: counts and y, x, σ₁, σ₁ − σ₂, rotation, then one per channel.
const LANE_Y: usize = 0;
const LANE_X: usize = 1;
const LANE_S: usize = 2;
const LANE_D: usize = 3;
const LANE_R: usize = 4;
const LANE_CH: usize = 5;

/// Lanes of a file with `channels` channels.
pub fn lanes(channels: usize) -> usize {
    LANE_CH + channels
}

/// §7.4, the `CMOD` section: the coding method and its distributions.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// §7.6 flags ([`FLAG_PREDICT_ROTATION`]).
    pub flags: u8,
    /// The distributions, [`DISTS`] of them (unused ones empty).
    pub dists: Vec<Dist>,
    /// For each distribution, the earlier one it is stored as a copy of.
    pub copy_of: Vec<Option<usize>>,
    toks: Vec<[u8; PROB_SCALE as usize]>,
    fs: Vec<[u32; TOKENS + 1]>,
    /// Index of each distribution's tables (0: the unused distributions' shared one).
    offsets: [u8; DISTS],
}

impl Model {
    /// A model of these distributions (`copy_of[i]`: distribution i is stored as a copy of an
    /// earlier one, which it must equal).
    pub fn new(flags: u8, dists: Vec<Dist>, copy_of: Vec<Option<usize>>) -> Model {
        assert_eq!(dists.len(), DISTS);
        assert_eq!(copy_of.len(), DISTS);
        // Unused distributions share one table of invalid tokens, at index 0.
        let (t0, f0) = Dist::default().tables();
        let (mut toks, mut fs) = (vec![t0], vec![f0]);
        let mut offsets = [0u8; DISTS];
        for i in 0..DISTS {
            let d = &dists[i];
            if let Some(j) = copy_of[i] {
                offsets[i] = offsets[j];
            } else if !d.freq.is_empty() {
                let o = &mut offsets[i];
                *o = toks.len() as u8;
                let (t, f) = d.tables();
                toks.push(t);
                fs.push(f);
            }
        }
        Model {
            flags,
            dists,
            copy_of,
            toks,
            fs,
            offsets,
        }
    }

    /// The `CMOD` payload (§7.6).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = BitWriter::default();
        w.put(0, 8); // method 0
        w.put(self.flags as u32, 8);
        for (d, c) in self.dists.iter().zip(&self.copy_of) {
            match c {
                Some(j) => {
                    w.put(1, 1);
                    w.put(COPY, 7);
                    w.put(*j as u32, 7);
                }
                None if d.freq.is_empty() => w.put(0, 1),
                None => {
                    w.put(1, 1);
                    d.write(&mut w);
                }
            }
        }
        w.finish()
    }

    /// Parses a `CMOD` payload (§7.6).
    pub fn parse(p: &[u8]) -> Result<Model, String> {
        let mut r = BitReader::new(p);
        match r.get(8) {
            Some(0) => {}
            Some(m) => return Err(format!("coding method {m} (this reader knows 0)")),
            None => return Err("empty".into()),
        }
        let flags = r.get(8).ok_or("no flags")? as u8;
        if flags & !FLAGS_KNOWN != 0 {
            return Err(format!("flags {flags:#04x} (known: 0x07)"));
        }
        let mut dists: Vec<Dist> = Vec::with_capacity(DISTS);
        let mut copy_of = vec![None; DISTS];
        for (i, c) in copy_of.iter_mut().enumerate() {
            if r.get(1).ok_or("the distributions end early")? == 0 {
                dists.push(Dist::default());
                continue;
            }
            let mut peek = BitReader::new(p);
            peek.seek(r.position());
            if peek.get(7) == Some(COPY) {
                r.get(7);
                let j = r.get(7).ok_or("the distributions end early")? as usize;
                if j >= i {
                    return Err(format!("distribution {i} copies {j}, not an earlier one"));
                }
                *c = Some(j);
                dists.push(dists[j].clone());
            } else {
                dists.push(Dist::read(&mut r)?);
            }
        }
        let (used, zero_pad) = r.end();
        if used != p.len() || !zero_pad {
            return Err(format!(
                "{} bytes after the distributions, or padding bits set",
                p.len().saturating_sub(used)
            ));
        }
        Ok(Model::new(flags, dists, copy_of))
    }
}

/// Something that codes one value: the writer records it, the reader decodes it.
pub(crate) trait Sym {
    /// Whether values are read (decoding) rather than given (encoding).
    const DECODE: bool;
    /// Codes `v` in `lane` with distribution `dist`.
    fn code(&mut self, lane: usize, dist: usize, v: &mut u32) -> Result<(), String>;
}

/// The writer's side: the values in coding order.
#[derive(Default)]
pub(crate) struct Recorder {
    pub syms: Vec<(u8, u8, u32)>,
}

impl Sym for Recorder {
    const DECODE: bool = false;
    fn code(&mut self, lane: usize, dist: usize, v: &mut u32) -> Result<(), String> {
        self.syms.push((lane as u8, dist as u8, *v));
        Ok(())
    }
}

/// The reader's side.
pub(crate) struct Reader<'a> {
    pub dec: rans::Decoder<'a>,
    pub model: &'a Model,
}

impl Sym for Reader<'_> {
    const DECODE: bool = true;
    #[inline(always)]
    fn code(&mut self, lane: usize, dist: usize, v: &mut u32) -> Result<(), String> {
        let i = self.model.offsets[dist] as usize;
        let t = self.dec.token(lane, &self.model.toks[i], &self.model.fs[i]);
        if t as usize >= TOKENS {
            return Err(format!("a value coded with the unused distribution {dist}"));
        }
        let raw = self.dec.raw(lane, rans::token_bits(t));
        *v = rans::untokenize(t, raw);
        Ok(())
    }
}

/// Histogram of tokens per distribution, for [`Dist::from_counts`].
pub(crate) fn count_tokens(syms: &[(u8, u8, u32)], counts: &mut [[u64; TOKENS]]) {
    for &(_, d, v) in syms {
        counts[d as usize][rans::tokenize(v).0 as usize] += 1;
    }
}

/// The coded bytes of a tile's recorded values under `model`.
pub(crate) fn encode_syms(syms: &[(u8, u8, u32)], model: &Model, lanes: usize) -> Vec<u8> {
    let starts: Vec<Vec<u16>> = model.dists.iter().map(|d| d.starts()).collect();
    let mut steps = Vec::with_capacity(syms.len() * 2);
    for &(lane, d, v) in syms {
        let (t, raw, nbits) = rans::tokenize(v);
        let dist = &model.dists[d as usize];
        steps.push(Step {
            lane,
            start: starts[d as usize][t as usize],
            freq: dist.freq[t as usize],
        });
        rans::raw_steps(lane, raw, nbits, &mut steps);
    }
    rans::encode(&steps, lanes)
}

/// Bits the recorded values cost under `model`, per lane-group name index (see
/// [`stream_of`]).
pub(crate) fn cost_syms(syms: &[(u8, u8, u32)], model: &Model, out: &mut [f64]) {
    for &(_, d, v) in syms {
        let (t, _, nbits) = rans::tokenize(v);
        out[stream_of(d as usize)] += model.dists[d as usize].cost(t) + nbits as f64;
    }
}

/// The stream (as `gsimg info` names them: counts, x, y, σ₁, σ₂, θ, channels) a distribution
/// codes.
pub(crate) fn stream_of(d: usize) -> usize {
    match d {
        D_COUNT..D_POS_Y_FIRST => 0,
        D_POS_Y_FIRST..D_POS_X => 2,
        D_POS_X | D_POS_X_SAME => 1,
        D_SCALE..D_DIFF => 3,
        D_DIFF..D_ROT => 4,
        D_ROT..D_CH0 => 5,
        D_CH0..D_CH1 => 6,
        D_CH1..D_CH2 => 7,
        D_CH2..D_ALPHA => 8,
        _ => 9,
    }
}

#[inline]
fn zigzag(r: i32) -> u32 {
    ((r << 1) ^ (r >> 31)) as u32
}

#[inline]
fn unzigzag(z: u32) -> i32 {
    ((z >> 1) as i32) ^ -((z & 1) as i32)
}

/// `v` of a `bits`-bit attribute on the scale of `to` bits.
#[inline]
fn rescale(v: u32, bits: u8, to: u8) -> u32 {
    if bits <= to {
        v << (to - bits)
    } else {
        v >> (bits - to)
    }
}

/// What the neighbours of a cell hold (§7.4): means of its Gaussians' codes, or those of the
/// nearest cell to the left or above when it is empty.
#[derive(Debug, Clone, Copy, Default)]
struct Summary {
    avail: bool,
    rot_avail: bool,
    count: u32,
    s1: u16,
    d: u16,
    rot: u16,
    ch: [u16; 4],
}

/// A prediction from up to three neighbours (§7.4): the previous Gaussian of the cell `p`, the
/// cell to the left `l` and the cell above `a`. With all three, `(2p + l + a + 2) >> 2`; with
/// two, their rounded mean `(u + v + 1) >> 1`; with one, its value.
#[derive(Clone, Copy)]
struct Pred {
    n: u32,
    value: u32,
    spread: u32,
}

#[inline(always)]
fn predict(prev: Option<u16>, left: Option<u16>, above: Option<u16>) -> Pred {
    let spread = |v: &[u32]| {
        let (lo, hi) = v
            .iter()
            .fold((u32::MAX, 0), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        hi - lo
    };
    match (prev, left, above) {
        (Some(p), Some(l), Some(a)) => {
            let (p, l, a) = (p as u32, l as u32, a as u32);
            Pred {
                n: 3,
                value: (2 * p + l + a + 2) >> 2,
                spread: spread(&[p, l, a]),
            }
        }
        (Some(u), Some(v), None) | (Some(u), None, Some(v)) | (None, Some(u), Some(v)) => {
            let (u, v) = (u as u32, v as u32);
            Pred {
                n: 2,
                value: (u + v + 1) >> 1,
                spread: u.abs_diff(v),
            }
        }
        (Some(u), None, None) | (None, Some(u), None) | (None, None, Some(u)) => Pred {
            n: 1,
            value: u as u32,
            spread: 0,
        },
        (None, None, None) => Pred {
            n: 0,
            value: 0,
            spread: 0,
        },
    }
}

/// §7.4: the activity class 0–6 of a prediction of a `bits`-bit attribute.
#[inline]
fn activity(p: &Pred, bits: u8) -> usize {
    match p.n {
        0 => 6,
        1 => 5,
        _ => match rescale(p.spread, bits, 8) {
            0 => 0,
            1..=3 => 1,
            4..=11 => 2,
            12..=31 => 3,
            _ => 4,
        },
    }
}

/// §7.4: the class 0–2 of a residual's size (0 without a prediction).
#[inline]
fn residual_class(p: &Pred, v: u32, bits: u8) -> usize {
    if p.n == 0 {
        return 0;
    }
    match rescale(v.div_ceil(2), bits, 8) {
        0 => 0,
        1..=4 => 1,
        _ => 2,
    }
}

/// §7.4: the class of a scale difference (on a 6-bit scale): 0, 1, 2–3, 4–7, 8 and more.
#[inline]
fn diff_class(d: u32, bits: u8) -> usize {
    match rescale(d, bits, 6) {
        0 => 0,
        1 => 1,
        2..=3 => 2,
        4..=7 => 3,
        _ => 4,
    }
}

/// Codes a value predicted by `p` (§7.4): without a prediction the code itself, else the
/// zig-zag of the residual. Returns the coded value.
#[inline(always)]
fn code_predicted<S: Sym>(
    s: &mut S,
    lane: usize,
    dist: usize,
    p: &Pred,
    bits: u8,
    code: &mut u16,
) -> Result<u32, String> {
    let max = (1u32 << bits) - 1;
    let mut v = 0;
    if !S::DECODE {
        v = if p.n == 0 {
            *code as u32
        } else {
            zigzag(*code as i32 - p.value as i32)
        };
    }
    s.code(lane, dist, &mut v)?;
    if S::DECODE {
        let c = if p.n == 0 {
            v as i64
        } else {
            p.value as i64 + unzigzag(v) as i64
        };
        if c < 0 || c > max as i64 {
            return Err(format!("a code of {c} outside 0 to {max}"));
        }
        *code = c as u16;
    }
    Ok(v)
}

/// Codes a non-negative value (`DECODE`: reads it, checking it is at most `max`).
#[inline(always)]
fn code_plain<S: Sym>(
    s: &mut S,
    lane: usize,
    dist: usize,
    v: u32,
    max: u32,
) -> Result<u32, String> {
    let mut v = v;
    s.code(lane, dist, &mut v)?;
    if S::DECODE && v > max {
        return Err(format!("a value of {v} above {max}"));
    }
    Ok(v)
}

#[allow(clippy::needless_range_loop)] // `gs` grows while decoding
/// §7.4: walks tile `cells` of `h` holding `n` Gaussians: codes each cell's count, then each of
/// its Gaussians' attributes. Encoding, `gs` holds the tile's Gaussians in the order of §7.3
/// (scales canonical, §5.2); decoding, `gs` is empty and receives them.
pub(crate) fn walk<S: Sym>(
    h: &Header,
    cells: &TileCells,
    n: u64,
    gs: &mut Vec<Quantized>,
    s: &mut S,
    flags: u8,
) -> Result<(), String> {
    let nc = h.channels.len();
    let color = nc >= 3;
    let pb = h.position.bits;
    let sb = h.scale.bits;
    let rb = h.rotation.bits;
    let pmax = (1u32 << pb) - 1;
    let smax = (1u32 << sb) - 1;
    let ch_bits: [u8; 4] = std::array::from_fn(|c| h.channels.get(c).map_or(0, |q| q.bits));
    let alpha = if h.layout.has_alpha() { nc - 1 } else { 4 };
    let predict_rotation = flags & FLAG_PREDICT_ROTATION != 0;
    let channel_values = flags & FLAG_CHANNEL_VALUES != 0;
    let scale_values = flags & FLAG_SCALE_VALUES != 0;
    // `row[cx]` holds the summary of the cell above until this row's cell replaces it.
    let mut row = vec![Summary::default(); cells.cw as usize];
    let mut k = 0usize;
    for j in 0..cells.ch {
        let cy = cells.cy0 + j;
        for i in 0..cells.cw {
            let cx = cells.cx0 + i;
            let above = if j > 0 { Some(row[i as usize]) } else { None };
            let left = if i > 0 {
                Some(row[i as usize - 1])
            } else {
                None
            };
            // The cell's count.
            let cp = predict(
                None,
                left.map(|l| l.count.min(u16::MAX as u32) as u16),
                above.map(|a| a.count.min(u16::MAX as u32) as u16),
            );
            let cctx = if cp.n == 0 {
                5
            } else {
                cp.value.min(4) as usize
            };
            let mut count = 0u32;
            if !S::DECODE {
                while k + (count as usize) < gs.len()
                    && gs[k + count as usize].cell_y == cy
                    && gs[k + count as usize].cell_x == cx
                {
                    count += 1;
                }
            }
            s.code(LANE_Y, D_COUNT + cctx, &mut count)?;
            if S::DECODE {
                if gs.len() as u64 + count as u64 > n {
                    return Err(format!(
                        "cell counts add up to more than the index's {n} Gaussians"
                    ));
                }
                gs.extend((0..count).map(|_| Quantized {
                    cell_y: cy,
                    cell_x: cx,
                    codes: [0; 9],
                }));
            }
            let la = left.filter(|l| l.avail);
            let aa = above.filter(|a| a.avail);
            // §7.4.5's means are over exact sums: a cell may hold more than 65,537
            // Gaussians of 16-bit codes, whose sum does not fit 32 bits.
            let mut sum_s1 = 0u64;
            let mut sum_d = 0u64;
            let mut sum_ch = [0u64; 4];
            let mut last_rot: Option<u16> = None;
            let mut prev: Option<(Quantized, u16)> = None; // (codes, d)
            let count_class = match count {
                0 | 1 => 0,
                2 | 3 => 1,
                _ => 2,
            };
            for g in k..k + count as usize {
                let left_in_cell = (k + count as usize - g - 1).min(3);
                let mut q = gs[g];
                // Position (§7.4.1).
                if pb > 0 {
                    let (mut dy, mut qx) = (0u32, q.codes[CODE_X] as u32);
                    match prev {
                        None => {
                            let y = code_plain(
                                s,
                                LANE_Y,
                                D_POS_Y_FIRST + (count as usize).min(4) - 1,
                                q.codes[CODE_Y] as u32,
                                pmax,
                            )?;
                            q.codes[CODE_Y] = y as u16;
                        }
                        Some((p, _)) => {
                            let py = p.codes[CODE_Y] as u32;
                            if !S::DECODE {
                                dy = q.codes[CODE_Y] as u32 - py;
                            }
                            dy = code_plain(s, LANE_Y, D_POS_Y_NEXT + left_in_cell, dy, pmax - py)?;
                            q.codes[CODE_Y] = (py + dy) as u16;
                        }
                    }
                    match prev {
                        Some((p, _)) if dy == 0 => {
                            let px = p.codes[CODE_X] as u32;
                            let dx = code_plain(
                                s,
                                LANE_X,
                                D_POS_X_SAME,
                                qx.wrapping_sub(px),
                                pmax - px,
                            )?;
                            qx = px + dx;
                        }
                        _ => qx = code_plain(s, LANE_X, D_POS_X, qx, pmax)?,
                    }
                    q.codes[CODE_X] = qx as u16;
                }
                // Scales (§7.4.2): σ₁ predicted, then σ₁ − σ₂.
                let mut d = 0u32;
                if sb > 0 {
                    let p = predict(
                        prev.map(|(p, _)| p.codes[CODE_S1]),
                        la.map(|l| l.s1),
                        aa.map(|a| a.s1),
                    );
                    let ctx = D_SCALE + activity(&p, sb) * 3 + count_class;
                    let pv = if scale_values { NO_PRED } else { p };
                    code_predicted(s, LANE_S, ctx, &pv, sb, &mut q.codes[CODE_S1])?;
                    let pd = predict(prev.map(|(_, d)| d), la.map(|l| l.d), aa.map(|a| a.d));
                    let dctx = if pd.n == 0 {
                        5
                    } else {
                        diff_class(pd.value, sb)
                    };
                    let s1 = q.codes[CODE_S1] as i32;
                    if rb > 0 {
                        // Canonical: σ₁ ≥ σ₂.
                        if !S::DECODE {
                            d = (s1 - q.codes[CODE_S2] as i32) as u32;
                        }
                        d = code_plain(s, LANE_D, D_DIFF + dctx, d, s1 as u32)?;
                        q.codes[CODE_S2] = (s1 as u32 - d) as u16;
                    } else {
                        let mut z = 0;
                        if !S::DECODE {
                            z = zigzag(s1 - q.codes[CODE_S2] as i32);
                        }
                        s.code(LANE_D, D_DIFF + dctx, &mut z)?;
                        let s2 = s1 as i64 - unzigzag(z) as i64;
                        if S::DECODE && !(0..=smax as i64).contains(&s2) {
                            return Err(format!("a scale code of {s2} outside 0 to {smax}"));
                        }
                        q.codes[CODE_S2] = s2 as u16;
                        d = s1.abs_diff(s2 as i32);
                    }
                }
                // Rotation (§7.4.3): only for elongated Gaussians.
                if rb > 0 && d > 0 {
                    let rmax = (1u32 << rb) - 1;
                    let pred = match prev {
                        _ if !predict_rotation => None,
                        Some((p, pd)) if pd > 0 => Some(p.codes[CODE_ROT]),
                        _ => la
                            .filter(|l| l.rot_avail)
                            .or(aa.filter(|a| a.rot_avail))
                            .map(|c| c.rot),
                    };
                    let ctx =
                        D_ROT + diff_class(d, sb).max(1) - 1 + if pred.is_some() { 0 } else { 4 };
                    let mut v = 0u32;
                    match pred {
                        None => {
                            v = code_plain(s, LANE_R, ctx, q.codes[CODE_ROT] as u32, rmax)?;
                            q.codes[CODE_ROT] = v as u16;
                        }
                        Some(p) => {
                            let m = 1i32 << rb;
                            if !S::DECODE {
                                let mut r = (q.codes[CODE_ROT] as i32 - p as i32) & (m - 1);
                                if r >= m / 2 {
                                    r -= m;
                                }
                                v = zigzag(r);
                            }
                            v = code_plain(s, LANE_R, ctx, v, rmax)?;
                            q.codes[CODE_ROT] = ((p as i32 + unzigzag(v)) & (m - 1)) as u16;
                        }
                    }
                    last_rot = Some(q.codes[CODE_ROT]);
                } else if S::DECODE {
                    q.codes[CODE_ROT] = 0;
                }
                // Channels (§7.4.4).
                let (mut last_v, mut last_b) = (0u32, 0u8);
                let mut last_p = Pred {
                    n: 0,
                    value: 0,
                    spread: 0,
                };
                for c in 0..nc {
                    let b = ch_bits[c];
                    if b == 0 {
                        continue;
                    }
                    let p = predict(
                        prev.map(|(p, _)| p.codes[CODE_CH + c]),
                        la.map(|l| l.ch[c]),
                        aa.map(|a| a.ch[c]),
                    );
                    let act = activity(&p, b);
                    let dist = if c == alpha {
                        D_ALPHA + act
                    } else if c == 0 {
                        D_CH0 + act
                    } else if color {
                        let base = if c == 1 { D_CH1 } else { D_CH2 };
                        base + act * 3 + residual_class(&last_p, last_v, last_b)
                    } else {
                        D_CH0 + act
                    };
                    let pv = if channel_values { NO_PRED } else { p };
                    last_v =
                        code_predicted(s, LANE_CH + c, dist, &pv, b, &mut q.codes[CODE_CH + c])?;
                    last_p = pv;
                    last_b = b;
                }
                sum_s1 += u64::from(q.codes[CODE_S1]);
                sum_d += u64::from(d);
                for (c, sc) in sum_ch.iter_mut().enumerate() {
                    *sc += u64::from(q.codes[CODE_CH + c]);
                }
                gs[g] = q;
                prev = Some((q, d as u16));
            }
            k += count as usize;
            let summary = if count > 0 {
                let mean = |s: u64| ((2 * s + u64::from(count)) / (2 * u64::from(count))) as u16;
                Summary {
                    avail: true,
                    rot_avail: last_rot.is_some(),
                    count,
                    s1: mean(sum_s1),
                    d: mean(sum_d),
                    rot: last_rot.unwrap_or(0),
                    ch: sum_ch.map(mean),
                }
            } else {
                let mut inherited = la.or(aa).unwrap_or_default();
                inherited.count = 0;
                inherited
            };
            row[i as usize] = summary;
        }
    }
    if S::DECODE && gs.len() as u64 != n {
        return Err(format!(
            "cell counts add up to {}, the index says {n}",
            gs.len()
        ));
    }
    Ok(())
}
