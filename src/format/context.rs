//! §7.4: the context model of version 1.1 tiles: which value of which Gaussian is coded, in
//! which lane, with which distribution. The writer and the reader walk a tile with the same
//! function ([`walk`]), so they cannot disagree on an order or a context; the reader's side
//! is a table lookup, a multiplication and a few integer operations per value, with the
//! checks of the decoded values gathered into one flag tested after the tile.

use super::header::Header;
use super::quant::{CODE_CH, CODE_ROT, CODE_S1, CODE_S2, CODE_X, CODE_Y, Quantized};
use super::rans::{self, BitReader, BitWriter, Dist, Step, TOKENS};
use super::tile::TileCells;

/// §7.6: the distributions, in the order the `CMOD` section stores them (the count of each
/// group in its comment).
pub const D_COUNT: usize = 0; // 20: quadrant × the left quadrant's count
pub const D_Y_FIRST: usize = 20; // 3: the quadrant's count
pub const D_Y_NEXT: usize = 23; // 4: the quadrant's count and the Gaussian's rank
pub const D_X_FIRST: usize = 27; // 3
pub const D_X_NEXT: usize = 30; // 4
pub const D_X_SAME: usize = 34; // 1: same y as the previous Gaussian
pub const D_SCALE: usize = 35; // 12: activity × first in the quadrant
pub const D_DIFF: usize = 47; // 6: the neighbours' difference class
pub const D_ROT: usize = 53; // 8: anisotropy × with / without a reference
pub const D_CH0: usize = 61; // 6: activity
pub const D_CH1: usize = 67; // 24: activity × residual class of channel 0
pub const D_CH2: usize = 91; // 24: activity × residual class of channel 1
pub const D_ALPHA: usize = 115; // 6: activity
/// Number of distributions.
pub const DISTS: usize = 121;

/// §7.6: the alphabet size that marks a distribution as a copy of an earlier one.
const COPY: u32 = 127;

/// §7.4: lanes: counts, y, x, σ₁, σ₁ − σ₂, rotation, then one per channel.
const LANE_N: usize = 0;
const LANE_Y: usize = 1;
const LANE_X: usize = 2;
const LANE_S: usize = 3;
const LANE_D: usize = 4;
const LANE_R: usize = 5;
const LANE_CH: usize = 6;

/// Lanes of a file with `channels` channels.
pub fn lanes(channels: usize) -> usize {
    LANE_CH + channels
}

/// §7.4, the `CMOD` section: the coding method and its distributions.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// The distributions, [`DISTS`] of them (unused ones empty).
    pub dists: Vec<Dist>,
    /// For each distribution, the earlier one it is stored as a copy of.
    pub copy_of: Vec<Option<usize>>,
    tables: Vec<rans::Tables>,
    /// Index of each distribution's tables (0: the unused distributions' shared one).
    offsets: [u8; DISTS],
}

impl Model {
    /// A model of these distributions (`copy_of[i]`: distribution i is stored as a copy of an
    /// earlier one, which it must equal).
    pub fn new(dists: Vec<Dist>, copy_of: Vec<Option<usize>>) -> Model {
        assert_eq!(dists.len(), DISTS);
        assert_eq!(copy_of.len(), DISTS);
        // Unused distributions share one table of invalid tokens, at index 0.
        let mut tables = vec![Dist::default().tables()];
        let mut offsets = [0u8; DISTS];
        for i in 0..DISTS {
            let d = &dists[i];
            if let Some(j) = copy_of[i] {
                offsets[i] = offsets[j];
            } else if !d.freq.is_empty() {
                let o = &mut offsets[i];
                *o = tables.len() as u8;
                tables.push(d.tables());
            }
        }
        Model {
            dists,
            copy_of,
            tables,
            offsets,
        }
    }

    /// The `CMOD` payload (§7.6).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = BitWriter::default();
        w.put(0, 8); // method 0
        w.put(0, 8); // flags
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
        match r.get(8) {
            Some(0) => {}
            Some(f) => return Err(format!("flags {f:#04x} (this reader knows none)")),
            None => return Err("no flags".into()),
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
        Ok(Model::new(dists, copy_of))
    }
}

/// Something that codes one value: the writer records it, the reader decodes it.
pub(crate) trait Coder {
    /// Whether values are read (decoding) rather than given (encoding).
    const DECODE: bool;
    /// Codes `v` in `lane` with distribution `dist`; returns the value (decoding: the one
    /// read, whatever `v` is).
    fn code(&mut self, lane: usize, dist: usize, v: u32) -> u32;
}

/// The writer's side: the values in coding order, as (lane, distribution, value).
#[derive(Default)]
pub(crate) struct Recorder {
    pub syms: Vec<(u8, u8, u32)>,
}

impl Coder for Recorder {
    const DECODE: bool = false;
    fn code(&mut self, lane: usize, dist: usize, v: u32) -> u32 {
        self.syms.push((lane as u8, dist as u8, v));
        v
    }
}

/// The reader's side.
pub(crate) struct Reader<'a> {
    pub dec: rans::Decoder<'a>,
    /// The decoding tables of each distribution (indices from [`DISTS`] on: the unused
    /// distributions' table), looked up without a bounds check.
    tables: [&'a rans::Tables; 128],
}

impl Coder for Reader<'_> {
    const DECODE: bool = true;
    #[inline(always)]
    fn code(&mut self, lane: usize, dist: usize, _v: u32) -> u32 {
        // An unused distribution decodes a value above every range (§7.4), which the walk
        // reports.
        self.dec.value(lane, self.tables[dist & 127])
    }
}

impl<'a> Reader<'a> {
    /// Decodes `dec` with the distributions of `model`.
    pub(crate) fn new(dec: rans::Decoder<'a>, model: &'a Model) -> Self {
        let tables =
            std::array::from_fn(|d| &model.tables[model.offsets.get(d).map_or(0, |&o| o as usize)]);
        Reader { dec, tables }
    }

    /// §7.5: after the walk, the coded data must be used up exactly.
    pub(crate) fn finish(&self, lanes: usize) -> Result<(), String> {
        self.dec.finish(lanes)
    }
}

/// Histogram of tokens per distribution, for [`Dist::from_counts`].
pub(crate) fn count_tokens(syms: &[(u8, u8, u32)], counts: &mut [[u64; TOKENS]]) {
    for &(_, d, v) in syms {
        counts[d as usize][rans::tokenize(v).0 as usize] += 1;
    }
}

/// The coded bytes of a tile's recorded values under `model` (§7.4–7.5).
pub(crate) fn encode_syms(syms: &[(u8, u8, u32)], model: &Model, lanes: usize) -> Vec<u8> {
    let starts: Vec<Vec<u16>> = model.dists.iter().map(|d| d.starts()).collect();
    let mut steps = Vec::with_capacity(syms.len());
    let mut raw = BitWriter::default();
    for &(lane, d, v) in syms {
        let (t, bits, nbits) = rans::tokenize(v);
        let dist = &model.dists[d as usize];
        steps.push(Step {
            lane,
            start: starts[d as usize][t as usize],
            freq: dist.freq[t as usize],
        });
        if nbits > 0 {
            raw.put_long(bits, nbits);
        }
    }
    rans::encode(&steps, lanes, raw)
}

/// Bits the recorded values cost under `model`, per stream (see [`stream_of`]).
pub(crate) fn cost_syms(syms: &[(u8, u8, u32)], model: &Model, out: &mut [f64]) {
    for &(_, d, v) in syms {
        let (t, _, nbits) = rans::tokenize(v);
        out[stream_of(d as usize)] += model.dists[d as usize].cost(t) + nbits as f64;
    }
}

/// The stream (as `gsimg info` names them: counts, x, y, σ₁, σ₂, θ, channels 0–2, alpha as
/// 9) a distribution codes.
pub(crate) fn stream_of(d: usize) -> usize {
    match d {
        D_COUNT..D_Y_FIRST => 0,
        D_Y_FIRST..D_X_FIRST => 2,
        D_X_FIRST..D_SCALE => 1,
        D_SCALE..D_DIFF => 3,
        D_DIFF..D_ROT => 4,
        D_ROT..D_CH0 => 5,
        D_CH0..D_CH1 => 6,
        D_CH1..D_CH2 => 7,
        D_CH2..D_ALPHA => 8,
        _ => 9,
    }
}
/// §7.4: the zig-zag of the residual `code − p` taken modulo `2^bits` into
/// `−2^(bits−1) … 2^(bits−1) − 1`: a value below `2^bits`.
#[inline(always)]
fn zigzag_mod(code: u32, p: u32, bits: u8) -> u32 {
    let m = 1u32 << bits;
    let r = code.wrapping_sub(p) & (m - 1);
    let s = if r >= m / 2 {
        r as i32 - m as i32
    } else {
        r as i32
    };
    ((s << 1) ^ (s >> 31)) as u32
}

#[inline(always)]
fn unzigzag(z: u32) -> u32 {
    (z >> 1) ^ (z & 1).wrapping_neg()
}

/// `v` of a `bits`-bit attribute on the scale of `to` bits (two shifts, one of them by 0).
#[cfg(test)]
fn rescale(v: u32, bits: u8, to: u8) -> u32 {
    let up = to.saturating_sub(bits) as u32;
    let down = bits.saturating_sub(to) as u32;
    (v << up) >> down
}

/// A class of §7.4 (activity, residual or difference class) for one attribute's width: the
/// class of a value is the number of thresholds it exceeds. §7.4 states each class on a fixed
/// scale (8 or 6 bits, [`rescale`]); the thresholds are those bounds taken back to the
/// attribute's own scale once per file, so the walk compares instead of shifting and
/// branching.
#[derive(Debug, Clone, Copy)]
struct Classes<const K: usize>([u32; K]);

impl<const K: usize> Classes<K> {
    /// Classes whose bounds on the `to`-bit scale are `edges` (the largest value of each
    /// class but the last), for `bits`-bit values halved (rounding up) first when `halve`.
    fn new(edges: [u32; K], bits: u8, to: u8, halve: bool) -> Self {
        let down = bits.saturating_sub(to) as u32;
        let up = to.saturating_sub(bits) as u32;
        Classes(edges.map(|e| {
            // The largest `w` with rescale(w) <= e.
            let w = if up > 0 {
                e >> up
            } else {
                (((e as u64 + 1) << down) - 1).min(u32::MAX as u64) as u32
            };
            // ceil(v / 2) <= w exactly when v <= 2w.
            if halve { w.saturating_mul(2) } else { w }
        }))
    }

    #[inline(always)]
    fn of(&self, v: u32) -> usize {
        self.0.iter().map(|&t| (v > t) as usize).sum()
    }
}

/// §7.4: the activity class 0–4 of two neighbours `spread` apart (on an 8-bit scale: 0,
/// 1–3, 4–11, 12–31, more).
fn activity_classes(bits: u8) -> Classes<4> {
    Classes::new([0, 3, 11, 31], bits, 8, false)
}

/// §7.4.4: the residual class 0–2 of a coded residual `v` (`⌈v/2⌉` on an 8-bit scale: 0,
/// 1–4, more).
fn residual_classes(bits: u8) -> Classes<2> {
    Classes::new([0, 4], bits, 8, true)
}

/// §7.4.2: the class of a scale difference (on a 6-bit scale): 0, 1, 2–3, 4–7, 8 and more.
fn diff_classes(bits: u8) -> Classes<4> {
    Classes::new([0, 1, 3, 7], bits, 6, false)
}

/// §7.4.5: what a quadrant offers its neighbours' predictions.
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

/// §7.4: a quadrant's prediction of one attribute from its neighbours: the mean of two, the
/// value of one, or none; and its activity class (0–4 by the spread of two, 4 for one, 5
/// for none).
#[derive(Debug, Clone, Copy, Default)]
struct Near {
    value: u32,
    has: bool,
    act: usize,
}

/// [`Near`] from the left (`l`, if `la`) and upper (`a`, if `aa`) neighbours' values.
#[inline(always)]
fn near(la: bool, l: u16, aa: bool, a: u16, act: &Classes<4>) -> Near {
    if la && aa {
        Near {
            value: (l as u32 + a as u32 + 1) >> 1,
            has: true,
            act: act.of(l.abs_diff(a) as u32),
        }
    } else if la || aa {
        Near {
            value: if la { l } else { a } as u32,
            has: true,
            act: 4,
        }
    } else {
        Near {
            value: 0,
            has: false,
            act: 5,
        }
    }
}

/// §7.4: a Gaussian's prediction of an attribute: for the first Gaussian of a quadrant its
/// neighbours' ([`Near`]); for the others, the rounded mean of that and the previous
/// Gaussian's code, or the previous code alone. Returns (whether there is one, its value).
#[inline(always)]
fn predict<const FIRST: bool>(n: &Near, prev: u32) -> (bool, u32) {
    if FIRST {
        (n.has, n.value)
    } else {
        // Without a neighbour's value the mean is the previous code alone.
        let v = if n.has { n.value } else { prev };
        (true, (prev + v + 1) >> 1)
    }
}

/// Codes a predicted code (§7.4) of an attribute whose codes are below `mask + 1`: with a
/// prediction `p` as [`zigzag_mod`]`(code, p)`, else as the code. Returns the code and the
/// coded value; a value above `mask` sets `bad`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn code_predicted<C: Coder>(
    c: &mut C,
    lane: usize,
    dist: usize,
    (has, p): (bool, u32),
    bits: u8,
    mask: u32,
    code: u16,
    bad: &mut bool,
) -> (u32, u32) {
    let enc = if C::DECODE {
        0
    } else if has {
        zigzag_mod(code as u32, p, bits)
    } else {
        code as u32
    };
    let v = c.code(lane, dist, enc);
    *bad |= v > mask;
    // Without a prediction, p is 0 and the zig-zag is not undone.
    let r = if has { unzigzag(v) } else { v };
    (p.wrapping_add(r) & mask, v)
}

/// §7.4: the quadrant (0 top left, 1 top right, 2 bottom left, 3 bottom right) of a record's
/// position in its cell, for position bits `pb`.
#[inline]
pub(crate) fn quadrant(q: &Quantized, pb: u8) -> usize {
    if pb == 0 {
        return 0;
    }
    let half = pb - 1;
    (((q.codes[CODE_Y] >> half) << 1) | (q.codes[CODE_X] >> half)) as usize
}

/// What the walk needs of a header, worked out once per tile.
struct Params {
    pb: u8,
    /// Mask of the position offsets within a quadrant.
    hmask: u32,
    sb: u8,
    smask: u32,
    rb: u8,
    rmask: u32,
    ch_bits: [u8; 4],
    ch_mask: [u32; 4],
    /// Per channel: its first distribution, the factor of its activity class, and whether
    /// the residual class of the channel before it adds (§7.4.4).
    ch_dist: [(usize, usize, usize); 4],
    s_act: Classes<4>,
    ch_act: [Classes<4>; 4],
    ch_res: [Classes<2>; 4],
    diff: Classes<4>,
}

impl Params {
    fn new(h: &Header) -> Params {
        let nc = h.channels.len();
        let color = nc >= 3;
        let alpha = if h.layout.has_alpha() { nc - 1 } else { 4 };
        let ch_bits: [u8; 4] = std::array::from_fn(|c| h.channels.get(c).map_or(0, |q| q.bits));
        let mask = |b: u8| (1u32 << b) - 1;
        let mut ch_dist = [(D_CH0, 1usize, 0usize); 4];
        for (ch, d) in ch_dist.iter_mut().enumerate().take(nc) {
            *d = if ch == alpha {
                (D_ALPHA, 1, 0)
            } else if ch == 0 || !color {
                (D_CH0, 1, 0)
            } else if ch == 1 {
                (D_CH1, 4, 1)
            } else {
                (D_CH2, 4, 1)
            };
        }
        let pb = h.position.bits;
        let (sb, rb) = (h.scale.bits, h.rotation.bits);
        Params {
            pb,
            hmask: mask(pb.saturating_sub(1)),
            sb,
            smask: mask(sb),
            rb,
            rmask: mask(rb),
            ch_bits,
            ch_mask: ch_bits.map(mask),
            ch_dist,
            s_act: activity_classes(sb),
            ch_act: ch_bits.map(activity_classes),
            ch_res: ch_bits.map(residual_classes),
            diff: diff_classes(sb),
        }
    }
}

/// What one quadrant with Gaussians offers the walk of its Gaussians (§7.4).
struct Quad {
    /// Its Gaussian count.
    m: usize,
    /// The high (quadrant) bits of its Gaussians' positions.
    yhi: u32,
    xhi: u32,
    ns: Near,
    /// The distribution of σ₁ − σ₂.
    dctx: usize,
    near_rot: Option<u16>,
    nch: [Near; 4],
}

/// The codes of the previous Gaussian of the quadrant.
#[derive(Default, Clone, Copy)]
struct Prev {
    y: u32,
    x: u32,
    s1: u32,
    d: u32,
    rot: u32,
    ch: [u32; 4],
}

/// §7.4: codes the attributes of Gaussian `r` (the first when `FIRST`) of quadrant `qd`
/// into `q` (encoding: from `q`). `prev` holds the previous Gaussian of the quadrant and
/// receives this one; `last_rot` the quadrant's last coded rotation.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn gaussian<C: Coder, const NC: usize, const FIRST: bool>(
    c: &mut C,
    p: &Params,
    qd: &Quad,
    r: usize,
    q: &mut Quantized,
    prev: &mut Prev,
    last_rot: &mut Option<u16>,
    bad: &mut bool,
) {
    // Position (§7.4.1), as offsets in the quadrant.
    if p.pb > 0 {
        let hmask = p.hmask;
        let (yl, xl) = (
            q.codes[CODE_Y] as u32 & hmask,
            q.codes[CODE_X] as u32 & hmask,
        );
        let (y, x) = if FIRST {
            let mm = qd.m.min(3);
            let y = c.code(LANE_Y, D_Y_FIRST + mm - 1, yl);
            let x = c.code(LANE_X, D_X_FIRST + mm - 1, xl);
            *bad |= (y | x) > hmask;
            (y, x)
        } else {
            let (py, px) = (prev.y, prev.x);
            let rank = if qd.m == 2 { 0 } else { r.min(3) };
            let dy = c.code(LANE_Y, D_Y_NEXT + rank, yl.wrapping_sub(py));
            *bad |= dy > hmask - py;
            // The same row: x as an offset from the previous one's (chosen without a branch:
            // the distribution, the value and its bound).
            let (dist, enc, base, limit) = if dy == 0 {
                (D_X_SAME, xl.wrapping_sub(px), px, hmask - px)
            } else {
                (D_X_NEXT + rank, xl, 0, hmask)
            };
            let v = c.code(LANE_X, dist, enc);
            *bad |= v > limit;
            (py.wrapping_add(dy), base.wrapping_add(v))
        };
        prev.y = y & hmask;
        prev.x = x & hmask;
        q.codes[CODE_Y] = (qd.yhi | prev.y) as u16;
        q.codes[CODE_X] = (qd.xhi | prev.x) as u16;
    } else {
        q.codes[CODE_Y] = 0;
        q.codes[CODE_X] = 0;
    }
    // Scales (§7.4.2): σ₁ predicted, then σ₁ − σ₂.
    let mut d = 0u32;
    if p.sb > 0 {
        let pr = predict::<FIRST>(&qd.ns, prev.s1);
        let ctx = D_SCALE + 2 * qd.ns.act + FIRST as usize;
        let (s1, _) = code_predicted(c, LANE_S, ctx, pr, p.sb, p.smask, q.codes[CODE_S1], bad);
        let v = c.code(
            LANE_D,
            qd.dctx,
            s1.wrapping_sub(q.codes[CODE_S2] as u32) & p.smask,
        );
        *bad |= v > p.smask || (p.rb > 0 && v > s1);
        d = v & p.smask;
        prev.s1 = s1;
        q.codes[CODE_S1] = s1 as u16;
        q.codes[CODE_S2] = (s1.wrapping_sub(d) & p.smask) as u16;
    } else {
        q.codes[CODE_S1] = 0;
        q.codes[CODE_S2] = 0;
    }
    // Rotation (§7.4.3): only for elongated Gaussians.
    let mut rot = 0;
    if p.rb > 0 && d > 0 {
        let reference = if !FIRST && prev.d > 0 {
            Some(prev.rot as u16)
        } else {
            qd.near_rot
        };
        let ctx = D_ROT + p.diff.of(d).max(1) - 1 + 4 * reference.is_none() as usize;
        let pr = (reference.is_some(), reference.unwrap_or(0) as u32);
        let code = q.codes[CODE_ROT];
        (rot, _) = code_predicted(c, LANE_R, ctx, pr, p.rb, p.rmask, code, bad);
        *last_rot = Some(rot as u16);
    }
    q.codes[CODE_ROT] = rot as u16;
    prev.rot = rot;
    prev.d = d;
    // Channels (§7.4.4), one call each so that each has its lane and tables fixed.
    let rc = channel::<C, NC, FIRST, 0>(c, p, qd, q, prev, 0, bad);
    let rc = channel::<C, NC, FIRST, 1>(c, p, qd, q, prev, rc, bad);
    let rc = channel::<C, NC, FIRST, 2>(c, p, qd, q, prev, rc, bad);
    channel::<C, NC, FIRST, 3>(c, p, qd, q, prev, rc, bad);
}

/// §7.4.4: codes channel `CH` (if below `NC`) of a Gaussian; `rc` is the residual class of
/// the channel before it. Returns this one's.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn channel<C: Coder, const NC: usize, const FIRST: bool, const CH: usize>(
    c: &mut C,
    p: &Params,
    qd: &Quad,
    q: &mut Quantized,
    prev: &mut Prev,
    rc: usize,
    bad: &mut bool,
) -> usize {
    if CH >= NC {
        return 0;
    }
    let b = p.ch_bits[CH];
    if b == 0 {
        q.codes[CODE_CH + CH] = 0;
        prev.ch[CH] = 0;
        return 0;
    }
    let nch = &qd.nch[CH];
    let pr = predict::<FIRST>(nch, prev.ch[CH]);
    let (base, mul, with_rc) = p.ch_dist[CH];
    let dist = base + mul * nch.act + with_rc * rc;
    let code = q.codes[CODE_CH + CH];
    let (code, v) = code_predicted(c, LANE_CH + CH, dist, pr, b, p.ch_mask[CH], code, bad);
    q.codes[CODE_CH + CH] = code as u16;
    prev.ch[CH] = code;
    if pr.0 { p.ch_res[CH].of(v) } else { 3 }
}

/// §7.4: walks tile `cells` of `h`: for each cell in raster order, each of its quadrants in
/// order, codes the quadrant's count, then each of its Gaussians' attributes. Encoding, `gs`
/// holds the tile's Gaussians in the order of §7.3 (by cell, quadrant, then codes; scales
/// canonical, §5.2); decoding, `gs` holds as many records as the tile index counts, and
/// receives them.
/// The coder is taken and given back by value: a local of the walk, its state can live in
/// registers.
pub(crate) fn walk<C: Coder>(
    h: &Header,
    cells: &TileCells,
    gs: &mut [Quantized],
    c: C,
) -> (C, Result<(), String>) {
    // One version of the walk per channel count, so that the channel loop unrolls.
    match h.channels.len() {
        1 => walk_n::<C, 1>(h, cells, gs, c),
        2 => walk_n::<C, 2>(h, cells, gs, c),
        3 => walk_n::<C, 3>(h, cells, gs, c),
        _ => walk_n::<C, 4>(h, cells, gs, c),
    }
}

fn walk_n<C: Coder, const NC: usize>(
    h: &Header,
    cells: &TileCells,
    gs: &mut [Quantized],
    mut c: C,
) -> (C, Result<(), String>) {
    let r = walk_body::<C, NC>(h, cells, gs, &mut c);
    (c, r)
}

#[inline(always)]
fn walk_body<C: Coder, const NC: usize>(
    h: &Header,
    cells: &TileCells,
    gs: &mut [Quantized],
    c: &mut C,
) -> Result<(), String> {
    debug_assert_eq!(h.channels.len(), NC);
    let n = gs.len();
    let p = Params::new(h);
    let pb = p.pb;
    let half = pb.saturating_sub(1);
    // The summaries of the quadrants of the current cell row: `top` the upper halves of
    // its cells, `bot` the lower halves (until they are replaced, the previous row's).
    let w2 = 2 * cells.cw as usize;
    let mut top = vec![Summary::default(); w2];
    let mut bot = vec![Summary::default(); w2];
    let mut k = 0usize;
    let mut bad = false;
    for j in 0..cells.ch {
        let cy = cells.cy0 + j;
        for i in 0..cells.cw {
            let cx = cells.cx0 + i;
            for quad in 0..4usize {
                let (qx, qy) = (quad & 1, quad >> 1);
                let sx = 2 * i as usize + qx;
                let left_in = sx > 0;
                let above_in = j > 0 || qy == 1;
                let (left, above) = if qy == 0 {
                    (top[sx.wrapping_sub(1).min(w2 - 1)], bot[sx])
                } else {
                    (bot[sx.wrapping_sub(1).min(w2 - 1)], top[sx])
                };
                // The count (§7.4.1).
                let lc = if left_in {
                    left.count.min(3) as usize
                } else {
                    4
                };
                let mut m = 0usize;
                if !C::DECODE {
                    while k + m < n
                        && gs[k + m].cell_y == cy
                        && gs[k + m].cell_x == cx
                        && quadrant(&gs[k + m], pb) == quad
                    {
                        m += 1;
                    }
                }
                let m = c.code(LANE_N, D_COUNT + 5 * quad + lc, m as u32) as usize;
                if m > n - k {
                    return Err(format!(
                        "cell counts add up to more than the index's {n} Gaussians"
                    ));
                }
                let la = left_in && left.avail;
                let aa = above_in && above.avail;
                let summary = if m == 0 {
                    let mut s = if la {
                        left
                    } else if aa {
                        above
                    } else {
                        Summary::default()
                    };
                    s.count = 0;
                    s
                } else {
                    let nb = |l: u16, a: u16, act: &Classes<4>| near(la, l, aa, a, act);
                    let ns = nb(left.s1, above.s1, &p.s_act);
                    let nd = nb(left.d, above.d, &p.s_act);
                    let mut nch = [Near::default(); 4];
                    for (ch, v) in nch.iter_mut().enumerate().take(NC) {
                        *v = nb(left.ch[ch], above.ch[ch], &p.ch_act[ch]);
                    }
                    let near_rot = if la && left.rot_avail {
                        Some(left.rot)
                    } else if aa && above.rot_avail {
                        Some(above.rot)
                    } else {
                        None
                    };
                    let (yhi, xhi) = if pb > 0 {
                        ((qy as u32) << half, (qx as u32) << half)
                    } else {
                        (0, 0)
                    };
                    let qd = Quad {
                        m,
                        yhi,
                        xhi,
                        ns,
                        dctx: D_DIFF + if nd.has { p.diff.of(nd.value) } else { 5 },
                        near_rot,
                        nch,
                    };
                    let (mut sum_s1, mut sum_d, mut sum_ch) = (0u64, 0u64, [0u64; 4]);
                    let mut last_rot: Option<u16> = None;
                    let mut prev = Prev::default();
                    let quad_gs = &mut gs[k..k + m];
                    for (r, q) in quad_gs.iter_mut().enumerate() {
                        if r == 0 {
                            gaussian::<C, NC, true>(
                                c,
                                &p,
                                &qd,
                                r,
                                q,
                                &mut prev,
                                &mut last_rot,
                                &mut bad,
                            );
                        } else {
                            gaussian::<C, NC, false>(
                                c,
                                &p,
                                &qd,
                                r,
                                q,
                                &mut prev,
                                &mut last_rot,
                                &mut bad,
                            );
                        }
                        q.cell_y = cy;
                        q.cell_x = cx;
                        sum_s1 += prev.s1 as u64;
                        sum_d += prev.d as u64;
                        for (s, code) in sum_ch.iter_mut().zip(&prev.ch).take(NC) {
                            *s += *code as u64;
                        }
                    }
                    // The rounded mean (the common counts divide by constants).
                    let mean = |s: u64| {
                        (match m {
                            1 => s,
                            2 => (s + 1) >> 1,
                            3 => (2 * s + 3) / 6,
                            _ => (2 * s + m as u64) / (2 * m as u64),
                        }) as u16
                    };
                    Summary {
                        avail: true,
                        rot_avail: last_rot.is_some(),
                        count: m as u32,
                        s1: mean(sum_s1),
                        d: mean(sum_d),
                        rot: last_rot.unwrap_or(0),
                        ch: [
                            mean(sum_ch[0]),
                            mean(sum_ch[1]),
                            mean(sum_ch[2]),
                            mean(sum_ch[3]),
                        ],
                    }
                };
                k += m;
                if qy == 0 {
                    top[sx] = summary;
                } else {
                    bot[sx] = summary;
                }
            }
        }
    }
    if k != n {
        return Err(format!("cell counts add up to {k}, the index says {n}"));
    }
    if bad {
        return Err("a coded value outside its range".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// §7.4's classes as the spec states them: the value taken to the class's scale.
    fn reference(v: u32, bits: u8, to: u8, halve: bool, edges: &[u32]) -> usize {
        let w = if halve { v.div_ceil(2) } else { v };
        let r = rescale(w, bits, to);
        edges.iter().filter(|&&e| r > e).count()
    }

    #[test]
    fn class_thresholds_match_the_scaled_classes() {
        for bits in 1..=16u8 {
            let (act, res, diff) = (
                activity_classes(bits),
                residual_classes(bits),
                diff_classes(bits),
            );
            for v in 0..(1u32 << bits) {
                assert_eq!(act.of(v), reference(v, bits, 8, false, &[0, 3, 11, 31]));
                assert_eq!(diff.of(v), reference(v, bits, 6, false, &[0, 1, 3, 7]));
                // Residuals go up to 2^bits − 1 (zig-zag of a bits-bit difference).
                assert_eq!(
                    res.of(v),
                    reference(v, bits, 8, true, &[0, 4]),
                    "{bits} {v}"
                );
            }
        }
    }
}
