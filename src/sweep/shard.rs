//! Splitting a sweep over machines: trial k runs where k mod COUNT = INDEX, the index taken
//! from `--shard` or from a scheduler's environment (Slurm job arrays, Kubernetes Indexed Jobs).

use super::Trial;
use crate::error::{Error, Result};

/// Which slice of the trials this process runs: trial k goes to shard k mod count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Parses `i/n` (0-based i).
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::Usage(format!(
                "--shard {spec}: {why}; expected INDEX/COUNT with 0 <= INDEX < COUNT, e.g. 0/4"
            ))
        };
        let (i, n) = spec.split_once('/').ok_or_else(|| bad("no `/`"))?;
        let index = i.trim().parse().map_err(|_| bad("INDEX is not a number"))?;
        let count = n.trim().parse().map_err(|_| bad("COUNT is not a number"))?;
        Self::new(index, count).map_err(|e| bad(&e))
    }

    pub fn new(index: usize, count: usize) -> std::result::Result<Self, String> {
        if count == 0 {
            return Err("COUNT must be >= 1".into());
        }
        if index >= count {
            return Err(format!("INDEX {index} is not below COUNT {count}"));
        }
        Ok(Self { index, count })
    }

    /// The shard from a scheduler's environment: Slurm job arrays (task i of
    /// `SLURM_ARRAY_TASK_COUNT`, counted from `SLURM_ARRAY_TASK_MIN` in steps of
    /// `SLURM_ARRAY_TASK_STEP`; with `count` given, `SLURM_ARRAY_TASK_ID` itself of `count`) or
    /// a Kubernetes Indexed Job (`JOB_COMPLETION_INDEX`, of `count`, from `--shard-count` or
    /// `MNIST_SWEEP_SHARD_COUNT`). `None` when neither is set.
    pub fn from_env(
        env: impl Fn(&str) -> Option<String>,
        count: Option<usize>,
    ) -> Result<Option<Self>> {
        let num = |name: &str| -> Result<Option<usize>> {
            match env(name) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    Error::Usage(format!("environment variable {name}={v} is not a number"))
                }),
            }
        };
        if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            let (index, n) = match count {
                // The whole array's size given: the task's own number is its shard, so that
                // one task resubmitted alone (`--array=2`) redoes shard 2, not shard 0/1.
                Some(n) => (id, n),
                None => {
                    let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
                    // `--array=0-6:2` numbers its 4 tasks 0, 2, 4, 6.
                    let step = num("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
                    let n = num("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
                        Error::Usage(
                            "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; pass \
                             --shard-count"
                                .into(),
                        )
                    })?;
                    let offset = id.checked_sub(min).ok_or_else(|| {
                        Error::Usage(format!(
                            "SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"
                        ))
                    })?;
                    if offset % step != 0 {
                        return Err(Error::Usage(format!(
                            "Slurm array task {id} is not on the array's step {step} from \
                             {min}; submit a range like --array=0-{}, or pass --shard I/N",
                            n.saturating_sub(1)
                        )));
                    }
                    (offset / step, n)
                }
            };
            return Self::new(index, n)
                .map(Some)
                .map_err(|e| Error::Usage(format!("Slurm array shard: {e}")));
        }
        if let Some(index) = num("JOB_COMPLETION_INDEX")? {
            let n = count.ok_or_else(|| {
                Error::Usage(
                    "JOB_COMPLETION_INDEX is set (Kubernetes Indexed Job) but the shard count is \
                     not: pass --shard-count N or set MNIST_SWEEP_SHARD_COUNT to the Job's \
                     completions"
                        .into(),
                )
            })?;
            return Self::new(index, n)
                .map(Some)
                .map_err(|e| Error::Usage(format!("Kubernetes Indexed Job shard: {e}")));
        }
        Ok(None)
    }

    pub fn owns(&self, trial_index: usize) -> bool {
        trial_index % self.count == self.index
    }
}

/// The trials of one shard (all of them without sharding), in canonical order.
pub fn shard_trials(trials: &[Trial], shard: Option<Shard>) -> Vec<&Trial> {
    trials
        .iter()
        .filter(|t| shard.is_none_or(|s| s.owns(t.index)))
        .collect()
}
