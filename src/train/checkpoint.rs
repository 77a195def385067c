//! Checkpoints: model and optimizer state in Burn's burnpack format, plus the loop state needed to
//! continue exactly. Each checkpoint is a directory `checkpoints/step-NNNNNNNN/` that is
//! assembled under a temporary name and renamed into place, so a crash at any moment leaves
//! either the complete new checkpoint or none of it.

use std::fs;
use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};

use crate::config::ExperimentConfig;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::run::fs::{fsync_dir, write_synced};

const MODEL_FILE: &str = "model.bpk";
const OPTIMIZER_FILE: &str = "optimizer.bpk";
const STATE_FILE: &str = "state.json";
const PREFIX: &str = "step-";
/// The model chosen on validation: `checkpoints/best/` (a checkpoint without optimizer state,
/// for `eval`, `predict` and `export`), and inside each step checkpoint, so that a resumed
/// run still holds it.
pub const BEST_DIR: &str = "best";
/// Prefix of checkpoints that failed to load and were moved aside.
pub const DAMAGED_PREFIX: &str = "damaged-";
/// Bumped when the state layout changes incompatibly.
const FORMAT: u32 = 1;

/// Where the loop stands after the last completed step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub format: u32,
    pub config: ExperimentConfig,
    pub backend: String,
    /// Steps completed so far, over all epochs.
    pub global_step: usize,
    /// Epoch and in-epoch index of the next step to run.
    pub epoch: usize,
    pub step_in_epoch: usize,
    pub best_test_accuracy: Option<f64>,
    pub last_test_accuracy: Option<f64>,
    /// Train loss of the last step done, so that a session that runs no step (a resume of a
    /// finished run) still reports it.
    #[serde(default)]
    pub last_train_loss: Option<f64>,
    /// With a validation split: the best validation accuracy so far, the global step that
    /// reached it, and the test accuracy of the model at that step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_valid_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_valid_step: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy_at_best_valid: Option<f64>,
    /// Evaluations since the validation accuracy last improved (early stopping's counter).
    #[serde(default)]
    pub evals_since_best: usize,
    /// Training wall time before this checkpoint, summed over interrupted sessions.
    pub elapsed_s: f64,
    /// The current epoch's train columns summed over its steps so far, for the epoch's line.
    #[serde(default)]
    pub epoch_train_loss_sum: f64,
    #[serde(default)]
    pub epoch_train_accuracy_sum: f64,
    #[serde(default)]
    pub epoch_steps: usize,
}

impl TrainState {
    pub fn new(config: &ExperimentConfig, backend: &str) -> Self {
        Self {
            format: FORMAT,
            config: config.clone(),
            backend: backend.to_string(),
            global_step: 0,
            epoch: 0,
            step_in_epoch: 0,
            best_test_accuracy: None,
            last_test_accuracy: None,
            last_train_loss: None,
            best_valid_accuracy: None,
            best_valid_step: None,
            test_accuracy_at_best_valid: None,
            evals_since_best: 0,
            elapsed_s: 0.0,
            epoch_train_loss_sum: 0.0,
            epoch_train_accuracy_sum: 0.0,
            epoch_steps: 0,
        }
    }
}

/// A checkpoint found on disk; its weights are loaded on demand.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub dir: PathBuf,
    pub state: TrainState,
}

/// The model chosen on validation so far and the loop state after the step that chose it.
#[derive(Clone)]
pub struct Best {
    pub model: Model,
    pub state: TrainState,
}

/// Saves a checkpoint under `checkpoints_dir` and prunes all but the newest `keep`. `best`,
/// when given, is saved inside it.
pub fn save(
    checkpoints_dir: &Path,
    model: &Model,
    optimizer: &ModuleOptimizer,
    state: &TrainState,
    best: Option<&Best>,
    keep: usize,
) -> Result<PathBuf> {
    let name = format!("{PREFIX}{:08}", state.global_step);
    let final_dir = install(checkpoints_dir, &name, &|tmp_dir, ctx| {
        write_contents(tmp_dir, model, Some(optimizer), state, ctx)?;
        if let Some(best) = best {
            let dir = tmp_dir.join(BEST_DIR);
            fs::create_dir(&dir).map_err(Error::io(ctx(BEST_DIR)))?;
            write_contents(&dir, &best.model, None, &best.state, ctx)?;
        }
        Ok(())
    })?;
    let all = list(checkpoints_dir);
    if all.len() > keep {
        for (_, dir) in &all[..all.len() - keep] {
            let _ = fs::remove_dir_all(dir);
        }
    }
    Ok(final_dir)
}

/// Saves `best` as `checkpoints_dir/best/`, replacing the one there.
pub fn save_best(checkpoints_dir: &Path, best: &Best) -> Result<PathBuf> {
    install(checkpoints_dir, BEST_DIR, &|tmp_dir, ctx| {
        write_contents(tmp_dir, &best.model, None, &best.state, ctx)
    })
}

type Context<'a> = &'a dyn Fn(&str) -> String;

/// A model (with its optimizer state when given) and its loop state into `dir`.
fn write_contents(
    dir: &Path,
    model: &Model,
    optimizer: Option<&ModuleOptimizer>,
    state: &TrainState,
    ctx: Context,
) -> Result<()> {
    model
        .save_file(dir.join(MODEL_FILE))
        .map_err(|e| Error::Other(format!("{}: {e}", ctx(MODEL_FILE))))?;
    if let Some(optimizer) = optimizer {
        optimizer
            .save(dir.join(OPTIMIZER_FILE))
            .map_err(|e| Error::Other(format!("{}: {e}", ctx(OPTIMIZER_FILE))))?;
    }
    let json = serde_json::to_vec_pretty(state).expect("state serializes");
    write_synced(&dir.join(STATE_FILE), &json).map_err(Error::io(ctx(STATE_FILE)))?;
    fsync_dir(dir);
    Ok(())
}

/// Assembles `checkpoints_dir/name` under a temporary name with `fill`, then renames it into
/// place.
fn install(
    checkpoints_dir: &Path,
    name: &str,
    fill: &dyn Fn(&Path, Context) -> Result<()>,
) -> Result<PathBuf> {
    let final_dir = checkpoints_dir.join(name);
    let tmp_dir = checkpoints_dir.join(format!(".tmp-{name}-{}", std::process::id()));
    let ctx = |what: &str| format!("writing checkpoint {}: {what}", tmp_dir.display());

    fs::create_dir_all(checkpoints_dir)
        .map_err(Error::io(format!("creating {}", checkpoints_dir.display())))?;
    remove_leftovers(checkpoints_dir);
    if tmp_dir.exists() {
        fs::remove_dir_all(&tmp_dir).map_err(Error::io(ctx("removing stale temporary")))?;
    }
    fs::create_dir(&tmp_dir).map_err(Error::io(ctx("creating")))?;
    // A write that fails (a full disk, most often) must not leave its partial files holding
    // the space the user needs back: the temporary goes, the older checkpoints stay.
    let installed =
        fill(&tmp_dir, &ctx).and_then(|()| rename_into_place(&tmp_dir, &final_dir, &ctx));
    if installed.is_err() {
        let _ = fs::remove_dir_all(&tmp_dir);
    }
    installed?;
    fsync_dir(checkpoints_dir);
    Ok(final_dir)
}

/// Moves the complete `tmp_dir` to `final_dir`, replacing a copy already there.
fn rename_into_place(tmp_dir: &Path, final_dir: &Path, ctx: Context) -> Result<()> {
    if !final_dir.exists() {
        return fs::rename(tmp_dir, final_dir).map_err(Error::io(ctx("renaming into place")));
    }
    // Same step saved again (a resumed run re-reaching it): replace it. The old copy is moved
    // aside first so that the name never points at a half-written directory, and back when
    // the new one cannot take its place.
    let name = final_dir.file_name().unwrap_or_default().to_string_lossy();
    let old = final_dir.with_file_name(format!(".old-{name}-{}", std::process::id()));
    fs::rename(final_dir, &old).map_err(Error::io(ctx("moving old copy aside")))?;
    if let Err(e) = fs::rename(tmp_dir, final_dir) {
        let _ = fs::rename(&old, final_dir);
        return Err(Error::io(ctx("renaming into place"))(e));
    }
    let _ = fs::remove_dir_all(&old);
    Ok(())
}

/// Removes what a process killed while saving left behind: a half-written `.tmp-*` directory
/// or a `.old-*` copy moved aside. The caller holds the run directory's lock, so no other
/// process is writing these.
fn remove_leftovers(checkpoints_dir: &Path) {
    let Ok(entries) = fs::read_dir(checkpoints_dir) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(".tmp-") || name.starts_with(".old-") {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Complete checkpoints in `checkpoints_dir`, oldest first.
pub fn list(checkpoints_dir: &Path) -> Vec<(usize, PathBuf)> {
    let Ok(entries) = fs::read_dir(checkpoints_dir) else {
        return Vec::new();
    };
    let mut found: Vec<(usize, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let step = name.strip_prefix(PREFIX)?.parse().ok()?;
            Some((step, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// Reads a checkpoint's state. `path` may be the checkpoint directory or a run directory (its
/// newest checkpoint is used).
pub fn open(path: &Path) -> Result<Checkpoint> {
    if !path.exists() {
        return Err(Error::Checkpoint(format!(
            "{}: no such file or directory",
            path.display()
        )));
    }
    if path.join(STATE_FILE).is_file() {
        return read_state(path);
    }
    let ckpts = path.join("checkpoints");
    match list(&ckpts).pop() {
        Some((_, dir)) => read_state(&dir),
        None => Err(no_checkpoints(path, &ckpts)),
    }
}

fn no_checkpoints(path: &Path, ckpts: &Path) -> Error {
    Error::Checkpoint(format!(
        "{} is neither a checkpoint (no {STATE_FILE}) nor a run directory with checkpoints \
         (nothing usable in {})",
        path.display(),
        ckpts.display()
    ))
}

fn read_state(dir: &Path) -> Result<Checkpoint> {
    let state_path = dir.join(STATE_FILE);
    let text = fs::read_to_string(&state_path)
        .map_err(|e| Error::Checkpoint(format!("{}: {e}", state_path.display())))?;
    let state: TrainState = serde_json::from_str(&text).map_err(|e| {
        Error::Checkpoint(format!(
            "{}: corrupt checkpoint state ({e})",
            state_path.display()
        ))
    })?;
    if state.format != FORMAT {
        return Err(Error::Checkpoint(format!(
            "{}: checkpoint format {} is not supported by this version (expects {FORMAT})",
            state_path.display(),
            state.format
        )));
    }
    Ok(Checkpoint {
        dir: dir.to_path_buf(),
        state,
    })
}

/// A checkpoint that loaded, with its weights (and optimizer state when asked for), and what was
/// passed over to find it.
pub struct Loaded {
    pub checkpoint: Checkpoint,
    pub model: Model,
    pub optimizer: Option<ModuleOptimizer>,
    /// The model chosen on validation that the checkpoint holds (loaded with the optimizer:
    /// for a resume).
    pub best: Option<Best>,
    /// One line per newer checkpoint that did not load: which, why, and where it is now.
    pub skipped: Vec<String>,
}

/// What to do with a checkpoint that does not load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damaged {
    /// Leave it where it is (a reader such as `eval`, which may run beside the trainer).
    Skip,
    /// Rename it to `damaged-step-N` beside the others, out of the resume order but kept for
    /// inspection (the trainer, which holds the run's lock).
    MoveAside,
}

/// The newest checkpoint of `path` (a checkpoint directory, or a run directory) that loads.
/// In a run directory, newer checkpoints that fail to load (a truncated `model.bpk`, a corrupt
/// `state.json`) are passed over, reported in [`Loaded::skipped`] and handled as `damaged`
/// says. A checkpoint of another architecture than `expect` is refused, not passed over.
/// `fresh` builds an untrained model of the config it is given on the right device;
/// `optimizer`, when given, builds an optimizer to load the optimizer state into — of the
/// checkpoint's config, so that the state loads into the optimizer that wrote it even when a
/// resume asks for another (which [`super::resume::check_changes`] then refuses) — and asks
/// for the checkpoint's [`Best`] too.
pub fn load_newest(
    path: &Path,
    expect: Option<&ExperimentConfig>,
    damaged: Damaged,
    fresh: &dyn Fn(&ExperimentConfig) -> Model,
    optimizer: Option<&dyn Fn(&ExperimentConfig) -> ModuleOptimizer>,
) -> Result<Loaded> {
    // Err((refused, e)): `refused` for a checkpoint that is fine but of another architecture
    // (the user's mistake, reported as such), else damage.
    type Attempt = std::result::Result<Loaded, (bool, Error)>;
    let load = |dir: &Path| -> Attempt {
        let damage = |e| (false, e);
        let ckpt = read_state(dir).map_err(damage)?;
        if let Some(config) = expect {
            ckpt.check_architecture(config).map_err(|e| (true, e))?;
        }
        let model = ckpt.load_model(fresh(&ckpt.state.config)).map_err(damage)?;
        let (optimizer, best) = match optimizer {
            Some(make) => (
                Some(
                    ckpt.load_optimizer(make(&ckpt.state.config))
                        .map_err(damage)?,
                ),
                ckpt.load_best(fresh(&ckpt.state.config)).map_err(damage)?,
            ),
            None => (None, None),
        };
        Ok(Loaded {
            checkpoint: ckpt,
            model,
            optimizer,
            best,
            skipped: Vec::new(),
        })
    };
    if !path.exists() {
        return Err(Error::Checkpoint(format!(
            "{}: no such file or directory",
            path.display()
        )));
    }
    if path.join(STATE_FILE).is_file() {
        return load(path).map_err(|(_, e)| e);
    }
    let ckpts = path.join("checkpoints");
    let mut skipped = Vec::new();
    for (step, dir) in list(&ckpts).into_iter().rev() {
        match load(&dir) {
            Ok(loaded) => return Ok(Loaded { skipped, ..loaded }),
            Err((true, e)) => return Err(e),
            Err((false, e)) => {
                let whereabouts = match damaged {
                    Damaged::Skip => String::new(),
                    Damaged::MoveAside => match move_aside(&ckpts, step, &dir) {
                        Ok(to) => format!("; kept as {}", to.display()),
                        Err(m) => format!("; could not move it aside: {m}"),
                    },
                };
                skipped.push(format!(
                    "skipped damaged checkpoint {}: {e}{whereabouts}",
                    dir.display()
                ));
            }
        }
    }
    let mut err = no_checkpoints(path, &ckpts).to_string();
    if !skipped.is_empty() {
        err = format!("{err}; {}", skipped.join("; "));
    }
    Err(Error::Checkpoint(err))
}

/// Renames a damaged checkpoint to `damaged-step-N` (`-2`, `-3`… if taken), where neither the
/// resume order nor the pruning of old checkpoints looks.
fn move_aside(ckpts: &Path, step: usize, dir: &Path) -> std::result::Result<PathBuf, String> {
    let base = format!("{DAMAGED_PREFIX}{PREFIX}{step:08}");
    let mut to = ckpts.join(&base);
    let mut n = 2;
    while to.exists() {
        to = ckpts.join(format!("{base}-{n}"));
        n += 1;
    }
    fs::rename(dir, &to).map_err(|e| e.to_string())?;
    fsync_dir(ckpts);
    Ok(to)
}

impl Checkpoint {
    /// Refuses a checkpoint whose parameter shapes differ from `config`'s.
    pub fn check_architecture(&self, config: &ExperimentConfig) -> Result<()> {
        let saved = &self.state.config;
        let shape = |c: &ExperimentConfig| {
            let convs = (c.model == crate::config::ModelKind::Cnn).then(|| c.conv_channels());
            (c.model, convs, c.hidden.clone(), c.batchnorm)
        };
        if shape(saved) != shape(config) {
            return Err(Error::Checkpoint(format!(
                "checkpoint {} was trained with architecture {}, but the config asks for {}; \
                 use the checkpoint's own config, or start a new run",
                self.dir.display(),
                saved.architecture(),
                config.architecture()
            )));
        }
        Ok(())
    }

    /// Loads the weights into `model` (which must have the checkpoint's architecture).
    pub fn load_model(&self, model: Model) -> Result<Model> {
        let path = self.dir.join(MODEL_FILE);
        model.try_load_file(&path).map_err(|e| {
            Error::Checkpoint(format!(
                "{}: cannot load model weights ({e}); the file is corrupt or from another \
                 architecture",
                path.display()
            ))
        })
    }

    /// The model chosen on validation that this checkpoint holds, if it holds one; `fresh`
    /// is an untrained model of the checkpoint's architecture to load it into.
    pub fn load_best(&self, fresh: Model) -> Result<Option<Best>> {
        let dir = self.dir.join(BEST_DIR);
        if !dir.join(STATE_FILE).is_file() {
            return Ok(None);
        }
        let best = read_state(&dir)?;
        let model = best.load_model(fresh)?;
        Ok(Some(Best {
            model,
            state: best.state,
        }))
    }

    /// Loads the optimizer state (moments, velocities, sums, step counts) into `optimizer`.
    pub fn load_optimizer(&self, optimizer: ModuleOptimizer) -> Result<ModuleOptimizer> {
        let path = self.dir.join(OPTIMIZER_FILE);
        optimizer.load(&path).map_err(|e| {
            Error::Checkpoint(format!(
                "{}: cannot load optimizer state ({e})",
                path.display()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Int, Tensor, TensorData};

    use super::*;
    use crate::config::ExperimentConfig;
    use crate::data::IMAGE_PIXELS;
    use crate::model::{Model, cross_entropy};

    #[test]
    fn checkpoint_round_trip_restores_weights_and_optimizer() {
        let tmp = tempfile::tempdir().unwrap();
        let ad = crate::backend::Backend::default_cpu()
            .device()
            .unwrap()
            .autodiff();
        ad.seed(5);
        let cfg = ExperimentConfig {
            batchnorm: true,
            hidden: vec![32],
            init: crate::config::Init::HeUniform,
            ..Default::default()
        };
        let mut model = Model::new(&cfg, &ad);
        let mut optim = burn::optim::AdamConfig::new().init();
        let x = Tensor::<2>::random([8, IMAGE_PIXELS], Distribution::Default, &ad);
        let y = Tensor::<1, Int>::from_data(TensorData::from([0i64, 1, 2, 3, 4, 5, 6, 7]), &ad);
        for _ in 0..3 {
            let loss = cross_entropy(model.forward(x.clone()), y.clone());
            let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-3, model, grads);
        }
        let state = TrainState::new(&cfg, "test");
        let dir = save(tmp.path(), &model, &optim, &state, None, 2).unwrap();
        let ckpt = open(&dir).unwrap();
        assert_eq!(ckpt.state, state);

        let loaded = ckpt.load_model(Model::new(&cfg, &ad)).unwrap();
        assert_eq!(loaded.parameters_flat(), model.parameters_flat());
        let mut loaded_optim = ckpt
            .load_optimizer(burn::optim::AdamConfig::new().init())
            .unwrap();
        // One more step from both: identical only if the Adam moments were restored.
        let step = |m: Model, o: &mut burn::optim::ModuleOptimizer| {
            let loss = cross_entropy(m.forward(x.clone()), y.clone());
            let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &m);
            o.step(1e-3, m, grads).parameters_flat()
        };
        assert_eq!(step(model, &mut optim), step(loaded, &mut loaded_optim));
    }

    /// A checkpoint `name` holding only a `state.json` of `bytes`.
    fn install_state(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
        install(dir, name, &|tmp, _| {
            fs::write(tmp.join(STATE_FILE), bytes).map_err(Error::io("test"))
        })
    }

    /// A checkpoint whose write fails half-way (the disk filled up) leaves nothing behind but
    /// the checkpoints that were there before.
    #[test]
    fn a_failed_write_removes_its_temporary_and_keeps_older_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let older = install_state(dir.path(), "step-00000010", b"{}").unwrap();
        let failed = install(dir.path(), "step-00000020", &|tmp, ctx| {
            fs::write(tmp.join(MODEL_FILE), vec![0u8; 4096]).map_err(Error::io("test"))?;
            let disk_full = std::io::Error::from_raw_os_error(28);
            Err(Error::io(ctx(OPTIMIZER_FILE))(disk_full))
        });
        let message = failed.unwrap_err().to_string();
        assert!(message.contains("optimizer"), "{message}");
        let left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["step-00000010"], "what the failed write left behind");
        assert!(older.join(STATE_FILE).exists());
    }

    /// Saving a step again (a resume re-reaching it) that fails keeps the copy already there.
    #[test]
    fn a_failed_rewrite_of_a_step_keeps_its_earlier_copy() {
        let dir = tempfile::tempdir().unwrap();
        let first = install_state(dir.path(), "step-00000010", b"first").unwrap();
        let again = install(dir.path(), "step-00000010", &|tmp, _| {
            fs::write(tmp.join(STATE_FILE), b"half").map_err(Error::io("test"))?;
            Err(Error::Other("disk full".into()))
        });
        assert!(again.is_err());
        assert_eq!(fs::read(first.join(STATE_FILE)).unwrap(), b"first");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
