//! Where the dataset files live on disk.
//!
//! The environment variable `MNIST_DATA_DIR` is not read here: the CLI maps
//! it onto `--data-dir` and passes the result in as `data_dir`, so there is
//! exactly one place that decides precedence.

use std::path::{Path, PathBuf};

use super::{DataError, DatasetName, FILES, resolve_file};

/// Sub-directory of the platform cache dir used for downloads.
pub const CACHE_SUBDIR: &str = "mnist-train";
/// Where Debian's `dataset-fashion-mnist` package installs the files.
pub const DEBIAN_FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Directories searched, in order, for `name`: if `data_dir` is `Some(d)`:
/// `d/<dir_name>`, then `d` itself. Otherwise the platform cache dir
/// (`<cache>/mnist-train/<dir_name>`, e.g. `~/.cache/mnist-train/mnist`), and
/// for Fashion-MNIST also `/usr/share/datasets/fashion-mnist` (Debian's package).
pub fn candidate_dirs(name: DatasetName, data_dir: Option<&Path>) -> Vec<PathBuf> {
    if let Some(dir) = data_dir {
        return vec![dir.join(name.dir_name()), dir.to_path_buf()];
    }
    let mut dirs: Vec<PathBuf> = cache_dir(name).into_iter().collect();
    if name == DatasetName::FashionMnist {
        dirs.push(PathBuf::from(DEBIAN_FASHION_MNIST_DIR));
    }
    dirs
}

/// The first candidate directory that holds all four files (raw or `.gz`).
///
/// The error lists every directory searched, what each lacked, and how to
/// get the files.
pub fn find(name: DatasetName, data_dir: Option<&Path>) -> Result<PathBuf, DataError> {
    let candidates = candidate_dirs(name, data_dir);
    let mut searched = Vec::with_capacity(candidates.len());
    for dir in candidates {
        let missing = missing_files(&dir);
        if missing.is_empty() {
            return Ok(dir);
        }
        searched.push(describe(&dir, &missing));
    }
    if searched.is_empty() {
        searched
            .push("no directories (no --data-dir given and no platform cache directory)".into());
    }
    Err(DataError::NotFound {
        name,
        searched: searched.join(", "),
    })
}

/// Where a download should write: `data_dir/<dir_name>` if given, else
/// `<cache>/mnist-train/<dir_name>`.
pub fn download_dir(name: DatasetName, data_dir: Option<&Path>) -> Result<PathBuf, DataError> {
    match data_dir {
        Some(dir) => Ok(dir.join(name.dir_name())),
        None => cache_dir(name).ok_or(DataError::NoCacheDir { name }),
    }
}

fn cache_dir(name: DatasetName) -> Option<PathBuf> {
    dirs::cache_dir().map(|c| c.join(CACHE_SUBDIR).join(name.dir_name()))
}

/// Canonical files absent from `dir` in both raw and `.gz` form.
fn missing_files(dir: &Path) -> Vec<&'static str> {
    FILES
        .into_iter()
        .filter(|file| resolve_file(dir, file).is_none())
        .collect()
}

fn describe(dir: &Path, missing: &[&str]) -> String {
    let what = if !dir.is_dir() {
        "does not exist".to_string()
    } else if missing.len() == FILES.len() {
        "has none of the files".to_string()
    } else {
        format!("lacks {}", missing.join(", "))
    };
    format!("{} ({what})", dir.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch_all(dir: &Path, gz: bool) {
        std::fs::create_dir_all(dir).unwrap();
        for file in FILES {
            let name = if gz {
                format!("{file}.gz")
            } else {
                file.to_string()
            };
            std::fs::write(dir.join(name), b"x").unwrap();
        }
    }

    #[test]
    fn candidates_with_data_dir() {
        let d = Path::new("/some/where");
        assert_eq!(
            candidate_dirs(DatasetName::Mnist, Some(d)),
            vec![
                PathBuf::from("/some/where/mnist"),
                PathBuf::from("/some/where")
            ]
        );
        assert_eq!(
            candidate_dirs(DatasetName::FashionMnist, Some(d)),
            vec![
                PathBuf::from("/some/where/fashion-mnist"),
                PathBuf::from("/some/where")
            ]
        );
    }

    #[test]
    fn candidates_without_data_dir() {
        let cache = dirs::cache_dir().map(|c| c.join("mnist-train"));
        let mnist = candidate_dirs(DatasetName::Mnist, None);
        let fashion = candidate_dirs(DatasetName::FashionMnist, None);
        match cache {
            Some(c) => {
                assert_eq!(mnist, vec![c.join("mnist")]);
                assert_eq!(
                    fashion,
                    vec![
                        c.join("fashion-mnist"),
                        PathBuf::from("/usr/share/datasets/fashion-mnist")
                    ]
                );
            }
            None => {
                assert!(mnist.is_empty());
                assert_eq!(fashion, vec![PathBuf::from(DEBIAN_FASHION_MNIST_DIR)]);
            }
        }
    }

    #[test]
    fn find_picks_the_first_complete_dir() {
        let root = tempfile::tempdir().unwrap();
        let sub = root.path().join("mnist");
        // Sub-dir incomplete, root complete: root wins.
        touch_all(root.path(), false);
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("{}.gz", FILES[0])), b"x").unwrap();
        assert_eq!(
            find(DatasetName::Mnist, Some(root.path())).unwrap(),
            root.path()
        );
        // Both complete: the sub-dir comes first.
        touch_all(&sub, true);
        assert_eq!(find(DatasetName::Mnist, Some(root.path())).unwrap(), sub);
        // Mixed raw and .gz counts as complete.
        std::fs::remove_file(sub.join(format!("{}.gz", FILES[3]))).unwrap();
        std::fs::write(sub.join(FILES[3]), b"x").unwrap();
        assert_eq!(find(DatasetName::Mnist, Some(root.path())).unwrap(), sub);
    }

    #[test]
    fn not_found_lists_dirs_missing_files_and_the_fix() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join(FILES[1]), b"x").unwrap();
        let err = find(DatasetName::FashionMnist, Some(root.path())).unwrap_err();
        assert!(matches!(
            err,
            DataError::NotFound {
                name: DatasetName::FashionMnist,
                ..
            }
        ));
        let msg = err.to_string();
        let sub = root.path().join("fashion-mnist");
        assert!(
            msg.contains(&format!("{} (does not exist)", sub.display())),
            "{msg}"
        );
        assert!(
            msg.contains(&format!(
                "{} (lacks {}, {}, {})",
                root.path().display(),
                FILES[0],
                FILES[2],
                FILES[3]
            )),
            "{msg}"
        );
        assert!(
            msg.contains("mnist-train download --dataset fashion-mnist [--data-dir DIR]"),
            "{msg}"
        );
        assert!(
            msg.contains("MNIST_DATA_DIR") && msg.contains("--data-dir"),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn download_dir_follows_data_dir() {
        assert_eq!(
            download_dir(DatasetName::FashionMnist, Some(Path::new("/d"))).unwrap(),
            PathBuf::from("/d/fashion-mnist")
        );
        match dirs::cache_dir() {
            Some(c) => assert_eq!(
                download_dir(DatasetName::Mnist, None).unwrap(),
                c.join("mnist-train/mnist")
            ),
            None => assert!(matches!(
                download_dir(DatasetName::Mnist, None),
                Err(DataError::NoCacheDir { .. })
            )),
        }
    }
}
