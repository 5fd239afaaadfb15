//! SHA-256 of bytes and of files, as lowercase hex: how rock recognises the
//! same binary (a rockd copy, the rock a checkpoint was taken with).

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Size and SHA-256 (lowercase hex) of the file at `path`, read in pieces.
pub fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut file = std::fs::File::open(path)?;
    let mut piece = vec![0; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut piece) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&piece[..n]);
        size += n as u64;
    }
    Ok((size, hex(&hasher.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_the_standard_one() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("f");
        std::fs::write(&path, vec![b'a'; 100_000]).expect("write");
        let (size, hash) = sha256_file(&path).expect("hash");
        assert_eq!(size, 100_000);
        assert_eq!(hash, sha256_hex(&vec![b'a'; 100_000]));
    }
}
