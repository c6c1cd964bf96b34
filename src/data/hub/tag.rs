//! The hub's tag of a file checked against the file: what makes a pinned key's content the
//! content the hub published at that commit (a corrupt download or cache blob is refused).

use std::path::Path;

use sha1::Sha1;

use super::HubError;

/// Check a fetched file against the hub's tag for it: a 64-hex tag is the sha256 of an LFS
/// file, a 40-hex one the git blob id (sha1 of `blob <len>\0` + bytes), `blake3:` a snapshot
/// file's digest. Other forms (a mirror's own) are not checked.
pub fn check_tag(path: &Path, file: &str, tag: &str, commit: &str) -> Result<(), HubError> {
    let hexlen = |n| tag.len() == n && tag.bytes().all(|b| b.is_ascii_hexdigit());
    let (what, actual) = if hexlen(64) {
        ("sha256", super::sha256_file(path)?)
    } else if hexlen(40) {
        ("git blob id", git_blob_id(path)?)
    } else if let Some(want) = tag.strip_prefix("blake3:") {
        let got = crate::cache::file_digest::digest_file(path)
            .map_err(|e| HubError::Io(path.display().to_string(), std::io::Error::other(e)))?;
        if got == want {
            return Ok(());
        }
        ("blake3", format!("blake3:{got}"))
    } else {
        tracing::debug!("{file}: tag `{tag}` is of no known form; not checked");
        return Ok(());
    };
    if actual.eq_ignore_ascii_case(tag) {
        return Ok(());
    }
    Err(HubError::Checksum {
        path: path.display().to_string(),
        file: file.to_string(),
        revision: commit.to_string(),
        what,
        expected: tag.to_string(),
        actual,
    })
}

/// git's object id of a file as a blob.
fn git_blob_id(path: &Path) -> Result<String, HubError> {
    super::digest_file::<Sha1>(path, |len| format!("blob {len}\0").into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_checked_by_their_form() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x");
        std::fs::write(&f, b"hello\n").unwrap();
        // `git hash-object` of "hello\n" and `sha256sum` of it.
        check_tag(&f, "x", "ce013625030ba8dba906f756967f9e9ca394464a", "c").unwrap();
        check_tag(
            &f,
            "x",
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
            "c",
        )
        .unwrap();
        let e = check_tag(&f, "x", &"0".repeat(40), "c").unwrap_err();
        assert!(e.to_string().contains("git blob id mismatch for x"), "{e}");
        check_tag(&f, "x", "W/\"weak\"", "c").unwrap();
    }
}
