//! Getting a dataset into memory: find its files, download them when missing (unless offline),
//! read them, and cut the splits to a config's limits.

use std::path::PathBuf;

use super::batcher::holdout;
use super::{DataError, DatasetName, MnistData, locate};

/// Where to look for a dataset and whether fetching it is allowed.
#[derive(Debug, Clone, Default)]
pub struct DataSource {
    /// A directory holding the files, directly or in a `mnist/` / `fashion-mnist/` subfolder;
    /// `None` = the platform cache directory.
    pub dir: Option<PathBuf>,
    /// Never download.
    pub offline: bool,
    /// Mirrors to try before the public ones.
    pub mirrors: Vec<String>,
}

/// Which images of a dataset a run uses: its limits, and the training images held out for
/// validation (drawn by `seed`). Made from a config by `ExperimentConfig::subset`.
#[derive(Debug, Clone, Copy)]
pub struct Subset {
    pub dataset: DatasetName,
    pub train_limit: Option<usize>,
    pub test_limit: Option<usize>,
    pub valid_split: usize,
    pub seed: u64,
}

/// Finds the dataset, downloading it when it is missing (unless `offline`).
pub fn load(name: DatasetName, source: &DataSource) -> Result<MnistData, DataError> {
    let data_dir = source.dir.as_deref();
    let missing = match locate::find(name, data_dir) {
        Ok(dir) => return MnistData::load_from(name, &dir),
        Err(e) => e,
    };
    if source.offline || !cfg!(feature = "download") {
        return Err(missing);
    }
    #[cfg(feature = "download")]
    {
        let dest = locate::download_dir(name, data_dir)?;
        eprintln!("{name} not found; downloading into {}", dest.display());
        let options = super::download::DownloadOptions::standard(name, &source.mirrors);
        if let Err(e) = super::download::download(name, &dest, &options) {
            return Err(DataError::NotDownloaded {
                missing: Box::new(missing),
                reason: e.to_string(),
            });
        }
        MnistData::load_from(name, &dest)
    }
    #[cfg(not(feature = "download"))]
    unreachable!()
}

/// The subset's dataset, cut to its `train_limit` / `test_limit`, with `valid_split` images of
/// the training images left held out for validation.
pub fn load_limited(config: &Subset, source: &DataSource) -> Result<MnistData, DataError> {
    let mut data = load(config.dataset, source)?;
    if let Some(n) = config.train_limit {
        data.train.truncate(n);
    }
    if let Some(n) = config.test_limit {
        data.test.truncate(n);
    }
    if config.valid_split > 0 {
        let n = data.train.len();
        if config.valid_split >= n {
            return Err(DataError::ValidSplitTooLarge {
                valid_split: config.valid_split,
                train_images: n,
            });
        }
        let (kept, held) = holdout(n, config.valid_split, config.seed);
        data.valid = data.train.select(&held);
        data.train = data.train.select(&kept);
    }
    Ok(data)
}
