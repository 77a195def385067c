//! Crash-safe file writes: every file a run or sweep writes goes through here, so a kill at
//! any moment leaves the old complete file or the new complete file, never half of one.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes through a temporary file, an fsync and a rename, so readers never see half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let ctx = || format!("writing {}", path.display());
    write_synced(&tmp, bytes).map_err(Error::io(ctx()))?;
    fs::rename(&tmp, path).map_err(Error::io(ctx()))?;
    if let Some(dir) = path.parent() {
        fsync_dir(dir);
    }
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
