//! The model contract: what an encoder network declares in its metadata and its inputs and
//! outputs, where a model file is, and its checksum.

use super::*;
use crate::core::error::Cause;

/// The two operating points of the encoder network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// Dense field for super-resolution (`models/upscale.onnx`).
    Upscale,
    /// Few Gaussians, trained through the file's quantizers (`models/compact.onnx`).
    Compact,
}

impl ModelKind {
    /// The model's file name in a `models/` folder.
    pub fn file_name(self) -> &'static str {
        match self {
            ModelKind::Upscale => "upscale.onnx",
            ModelKind::Compact => "compact.onnx",
        }
    }

    /// The kind's name: `"upscale"` or `"compact"`.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Upscale => "upscale",
            ModelKind::Compact => "compact",
        }
    }
}

/// The file quantizers a compact model was trained with (§5 of the format).
#[derive(Debug, Clone, PartialEq)]
pub struct Quantizers {
    /// Bits of each position offset inside its cell.
    pub position_bits: u8,
    /// Bits of each log2 σ.
    pub scale_bits: u8,
    /// Range of log2 σ (input pixels).
    pub scale_range: (f32, f32),
    /// Bits of the rotation.
    pub rotation_bits: u8,
    /// Bits of Y, Cb, Cr.
    pub color_bits: [u8; 3],
    /// Lower ends of the Y, Cb, Cr ranges.
    pub color_min: [f32; 3],
    /// Upper ends of the Y, Cb, Cr ranges.
    pub color_max: [f32; 3],
}

/// What a model file says about itself (its `gsimg.*` metadata), checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// Operating point.
    pub kind: ModelKind,
    /// Side c of a cell in input pixels.
    pub cell: u32,
    /// Gaussians per cell, K.
    pub per_cell: u32,
    /// Input sides must be multiples of this.
    pub multiple: u32,
    /// Context pixels on each side one cell's output depends on.
    pub receptive_field: u32,
    /// The model's version string.
    pub version: String,
    /// The file quantizers (compact models).
    pub quantizers: Option<Quantizers>,
    /// The range of log2 σ the model produces, when it says.
    pub scale_range: Option<(f32, f32)>,
    /// The presence threshold of the model's operating point (`gsimg.presence_threshold`,
    /// default 0.5): a Gaussian is kept when its presence is at least this.
    pub presence_threshold: f32,
}

pub(super) fn meta_err(key: &str, why: impl std::fmt::Display) -> Error {
    Error::Model(format!("metadata `{key}` {why}").into())
}

impl ModelInfo {
    /// Reads and checks the `gsimg.*` metadata.
    pub(crate) fn from_metadata(meta: &BTreeMap<String, String>) -> Result<ModelInfo> {
        let get = |key: &str| -> Result<&str> {
            meta.get(key).map(|s| s.trim()).ok_or_else(|| {
                let have: Vec<&str> = meta.keys().map(|k| k.as_str()).collect();
                meta_err(
                    key,
                    format!(
                        "is missing (the model has {}): not a gsimg encoder model, or exported \
                         without its metadata",
                        if have.is_empty() {
                            "no metadata".to_string()
                        } else {
                            format!("only {}", have.join(", "))
                        }
                    ),
                )
            })
        };
        fn num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T> {
            v.parse()
                .map_err(|_| meta_err(key, format!("is `{v}`, not a number of the right kind")))
        }
        fn list<T: std::str::FromStr + Copy>(key: &str, v: &str) -> Result<[T; 3]> {
            let items: Vec<T> = v
                .split(',')
                .map(|p| num(key, p.trim()))
                .collect::<Result<_>>()?;
            <[T; 3]>::try_from(items).map_err(|_| {
                meta_err(
                    key,
                    format!("is `{v}`: expected three comma-separated values"),
                )
            })
        }
        let positive = |key: &str, lo: u32, hi: u32| -> Result<u32> {
            let v: u32 = num(key, get(key)?)?;
            if !(lo..=hi).contains(&v) {
                return Err(meta_err(key, format!("is {v}, outside {lo}..={hi}")));
            }
            Ok(v)
        };
        let kind = match get("gsimg.kind")? {
            "upscale" => ModelKind::Upscale,
            "compact" => ModelKind::Compact,
            other => {
                return Err(meta_err(
                    "gsimg.kind",
                    format!("is `{other}` (expected upscale or compact)"),
                ));
            }
        };
        let cell = positive("gsimg.cell", 1, 256)?;
        let per_cell = positive("gsimg.per_cell", 1, 4096)?;
        let multiple = positive("gsimg.multiple", 1, 4096)?;
        if multiple % cell != 0 {
            return Err(meta_err(
                "gsimg.multiple",
                format!("is {multiple}, not a multiple of gsimg.cell = {cell}"),
            ));
        }
        let receptive_field = positive("gsimg.receptive_field", 0, 4096)?;
        let version = get("gsimg.version")?.to_string();
        let range = |lo_key: &str, hi_key: &str| -> Result<Option<(f32, f32)>> {
            match (meta.get(lo_key), meta.get(hi_key)) {
                (Some(lo), Some(hi)) => {
                    let (lo, hi): (f32, f32) = (num(lo_key, lo.trim())?, num(hi_key, hi.trim())?);
                    if !(lo.is_finite() && hi.is_finite() && lo <= hi)
                        || lo.abs().max(hi.abs()) > MAX_LOG2_SCALE
                    {
                        return Err(meta_err(
                            lo_key,
                            format!("/ {hi_key}: bad range {lo}..{hi}"),
                        ));
                    }
                    Ok(Some((lo, hi)))
                }
                _ => Ok(None),
            }
        };
        // An upscale model may say `gsimg.log2_sigma_range` = "lo,hi" instead.
        let scale_range = match range("gsimg.scale_min", "gsimg.scale_max")? {
            Some(r) => Some(r),
            None => match meta.get("gsimg.log2_sigma_range") {
                Some(v) => {
                    let key = "gsimg.log2_sigma_range";
                    let parts: Vec<f32> = v
                        .split(',')
                        .map(|p| num(key, p.trim()))
                        .collect::<Result<_>>()?;
                    match parts[..] {
                        [lo, hi]
                            if lo.is_finite()
                                && hi.is_finite()
                                && lo <= hi
                                && lo.abs().max(hi.abs()) <= MAX_LOG2_SCALE =>
                        {
                            Some((lo, hi))
                        }
                        _ => return Err(meta_err(key, format!("is `{v}`: expected lo,hi"))),
                    }
                }
                None => None,
            },
        };
        let bits = |key: &str| -> Result<u8> {
            let v: u8 = num(key, get(key)?)?;
            if v > format::consts::MAX_BITS {
                return Err(meta_err(key, format!("is {v}, over 16 bits")));
            }
            Ok(v)
        };
        let quantizers = match kind {
            ModelKind::Upscale => None,
            ModelKind::Compact => {
                let color_bits: [u8; 3] = list("gsimg.color_bits", get("gsimg.color_bits")?)?;
                if color_bits[1] != color_bits[2] || color_bits.iter().any(|&b| b > 16) {
                    return Err(meta_err(
                        "gsimg.color_bits",
                        format!(
                            "is {color_bits:?}: Cb and Cr need the same number of bits (at most 16)"
                        ),
                    ));
                }
                let color_min: [f32; 3] = list("gsimg.color_min", get("gsimg.color_min")?)?;
                let color_max: [f32; 3] = list("gsimg.color_max", get("gsimg.color_max")?)?;
                if (0..3).any(|i| {
                    !(color_min[i].is_finite() && color_max[i].is_finite())
                        || color_min[i] > color_max[i]
                        || color_min[i].abs().max(color_max[i].abs()) > MAX_CHANNEL_VALUE
                }) {
                    return Err(meta_err(
                        "gsimg.color_min",
                        format!("/ gsimg.color_max: bad ranges {color_min:?}..{color_max:?}"),
                    ));
                }
                Some(Quantizers {
                    position_bits: bits("gsimg.pos_bits")?,
                    scale_bits: bits("gsimg.scale_bits")?,
                    scale_range: scale_range.ok_or_else(|| {
                        meta_err(
                            "gsimg.scale_min",
                            "and gsimg.scale_max are required for compact",
                        )
                    })?,
                    rotation_bits: bits("gsimg.rot_bits")?,
                    color_bits,
                    color_min,
                    color_max,
                })
            }
        };
        // A model whose presence logits gather at the decision boundary (the equilibrium of a
        // hard gate trained straight-through) names a threshold just below it, so that
        // rounding differences between training and inference do not flip those Gaussians.
        let presence_threshold = match meta.get("gsimg.presence_threshold") {
            None => 0.5,
            Some(v) => {
                let key = "gsimg.presence_threshold";
                let t: f32 = num(key, v.trim())?;
                if !(t > 0.0 && t < 1.0) {
                    return Err(meta_err(
                        key,
                        format!("is {t}: expected above 0 and below 1"),
                    ));
                }
                t
            }
        };
        Ok(ModelInfo {
            kind,
            cell,
            per_cell,
            multiple,
            receptive_field,
            version,
            quantizers,
            scale_range,
            presence_threshold,
        })
    }

    /// The margin of a tile's window around its core: the receptive field, rounded up to a
    /// whole `multiple` so windows stay aligned with the cell grid.
    pub(crate) fn tile_margin(&self) -> u32 {
        self.receptive_field.div_ceil(self.multiple) * self.multiple
    }
}

/// Checks the declared inputs and outputs against the contract.
pub(super) fn check_io(decl: &ModelDecl, info: &ModelInfo) -> Result<()> {
    let describe = |t: &[TensorDecl]| {
        t.iter()
            .map(|d| format!("{} {:?}", d.name, d.shape))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let [input] = &decl.inputs[..] else {
        return Err(Error::Model(
            format!(
                "expected one input `image` [1, 3, H, W], the model has {}",
                describe(&decl.inputs)
            )
            .into(),
        ));
    };
    let dim_ok = |d: i64, want: i64| d == want || d < 0;
    if input.name != "image"
        || input.is_f32 != Some(true)
        || input.shape.len() != 4
        || !dim_ok(input.shape[0], 1)
        || !dim_ok(input.shape[1], 3)
    {
        return Err(Error::Model(
            format!(
                "expected one float32 input `image` [1, 3, H, W], the model has {}",
                describe(&decl.inputs)
            )
            .into(),
        ));
    }
    let Some(out) = decl.outputs.iter().find(|o| o.name == "gaussians") else {
        return Err(Error::Model(
            format!(
                "expected an output `gaussians` [1, K, 9, H/c, W/c], the model has {}",
                describe(&decl.outputs)
            )
            .into(),
        ));
    };
    if out.is_f32 != Some(true)
        || out.shape.len() != 5
        || !dim_ok(out.shape[0], 1)
        || !dim_ok(out.shape[1], info.per_cell as i64)
        || !dim_ok(out.shape[2], 9)
    {
        return Err(Error::Model(format!(
            "expected a float32 output `gaussians` [1, K = {}, 9, H/c, W/c], the model declares {:?}",
            info.per_cell, out.shape
        ).into()));
    }
    Ok(())
}

/// Where the default model of `kind` is looked for: `models/` next to the executable, then the
/// source tree's `models/` (known at build time).
pub fn model_candidates(kind: ModelKind) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        v.push(dir.join("models").join(kind.file_name()));
    }
    v.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join(kind.file_name()),
    );
    v
}

/// The installed model of `kind` (the first of `model_candidates` that exists), or
/// [`Error::ModelNotFound`] naming every path tried.
pub fn locate_model(kind: ModelKind) -> Result<PathBuf> {
    let tried = model_candidates(kind);
    match tried.iter().find(|p| p.is_file()) {
        Some(p) => Ok(p.clone()),
        None => Err(Error::ModelNotFound {
            kind: kind.name(),
            tried,
        }),
    }
}

/// Checks a model file against the SHA-256 recorded beside it, in `<model file>.sha256` (the
/// format of `sha256sum`), when there is one: a damaged model (a truncated copy, flipped bits)
/// is refused before it runs. Returns whether there was a checksum to check; the models gsimg
/// ships all have one.
pub fn verify_model(path: &Path) -> Result<bool> {
    let Some(name) = path.file_name() else {
        return Ok(false);
    };
    let mut side = name.to_os_string();
    side.push(".sha256");
    let side = path.with_file_name(side);
    let text = match std::fs::read_to_string(&side) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(Error::Model(Cause::with_source(
                format!("cannot read {}: {e}", side.display()),
                e,
            )));
        }
    };
    let want = crate::encode::digest::parse_sha256(&text).ok_or_else(|| {
        Error::Model(
            format!(
                "{}: not a SHA-256 checksum (expected 64 hex digits, as sha256sum writes)",
                side.display()
            )
            .into(),
        )
    })?;
    let (_, got) = crate::encode::digest::file_sha256(path).map_err(|e| {
        Error::Model(Cause::with_source(
            format!("model {}: {e}", path.display()),
            e,
        ))
    })?;
    if got != want {
        return Err(Error::Model(
            format!(
                "model {} is damaged: its SHA-256 is {got}, {} records {want}",
                path.display(),
                side.display()
            )
            .into(),
        ));
    }
    Ok(true)
}
