//! Crash-safe file writes: every file a run or sweep writes goes through here, so a kill at
//! any moment leaves the old complete file or the new complete file, never half of one.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes through a temporary file, an fsync and a rename, so readers never see half a file.
/// The temporary has a unique name beside `path` (two files of one stem, `metrics.csv` and
/// `metrics.jsonl`, never share one) and is removed when any step fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let ctx = || format!("writing {}", path.display());
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tmp-");
    // The file a user gets reads as one `File::create` makes (0666 less the umask), not as the
    // private 0600 of a temporary.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut tmp = builder.tempfile_in(dir).map_err(Error::io(ctx()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(Error::io(ctx()))?;
    tmp.persist(path).map_err(|e| Error::io(ctx())(e.error))?;
    fsync_dir(dir);
    Ok(())
}

/// Creates `path` with `bytes` and waits until they are on disk.
pub fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Makes a rename in `dir` durable. Not every platform can open a directory, and failing here
/// loses nothing that the rename has not already made consistent.
pub fn fsync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two files of one stem written side by side each get their own temporary, a successful
    /// write leaves no temporary behind, and others may read the file.
    #[test]
    fn files_of_one_stem_do_not_share_a_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let (csv, jsonl) = (
            dir.path().join("metrics.csv"),
            dir.path().join("metrics.jsonl"),
        );
        write_atomic(&csv, b"a,b\n").unwrap();
        write_atomic(&jsonl, b"{}\n").unwrap();
        assert_eq!(fs_read(&csv), "a,b\n");
        assert_eq!(fs_read(&jsonl), "{}\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        // The files read as `File::create` makes them (0666 less the umask), not as the
        // private 0600 of a temporary.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let reference = dir.path().join("reference");
            File::create(&reference).unwrap();
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&csv), mode(&reference));
        }
    }

    /// A write that cannot complete leaves the old file whole and no temporary.
    #[test]
    fn a_failed_write_keeps_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("summary.json");
        write_atomic(&target, b"old").unwrap();
        // A directory in the file's place makes the final rename fail after the bytes are
        // written.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir_all(blocked.join("inner")).unwrap();
        assert!(write_atomic(&blocked, b"new").is_err());
        assert_eq!(fs_read(&target), "old");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            !names
                .iter()
                .any(|n| n.to_string_lossy().starts_with(".tmp-")),
            "{names:?}"
        );
    }

    fn fs_read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap()
    }
}
