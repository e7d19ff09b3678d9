//! SHA-256 of files: the integrity checks of the model files (a `<model>.sha256` beside each)
//! and of the ONNX Runtime library fetched into the cache (a manifest written at fetch time).

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

/// The size and lowercase hex SHA-256 of a file.
pub(crate) fn file_sha256(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let hex = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((size, hex))
}

/// The first hash of a `sha256sum`-style text (`<64 hex digits>  <name>`), lowercased.
pub(crate) fn parse_sha256(text: &str) -> Option<String> {
    let word = text.split_whitespace().next()?;
    (word.len() == 64 && word.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| word.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_and_sidecar_format() {
        let p = std::env::temp_dir().join(format!("gsimg-digest-{}", std::process::id()));
        std::fs::write(&p, b"abc").unwrap();
        let (n, h) = file_sha256(&p).unwrap();
        let _ = std::fs::remove_file(&p);
        assert_eq!(n, 3);
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            parse_sha256(&format!("{}  x.onnx\n", h.to_uppercase())),
            Some(h)
        );
        assert_eq!(parse_sha256("abc  x.onnx"), None);
        assert_eq!(parse_sha256(""), None);
    }
}
