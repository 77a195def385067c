//! Runs a sweep's trials as child processes of this binary (`train --config … --run-dir …`),
//! `jobs` at a time, each with its share of the CPU threads. A child per trial isolates each
//! trial's thread pool and makes resuming trivial (`train --resume <dir>`).
//!
//! Several sweep processes may work on one directory (a second terminal, machines sharing a
//! filesystem): each claims a trial before touching it, and a trial claimed by another process
//! is "running elsewhere", skipped, never failed.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::Trial;
use super::hparams;
use super::results::{
    FailureRecord, Manifest, ManifestTrial, STATUS_FILE, TrialStatus, finished_summary,
    trial_status,
};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::run::{CONFIG_FILE, write_atomic};
use crate::signals::StopFlag;
use crate::tensorboard::{self, SessionStatus};

/// How the children run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The binary to run (`std::env::current_exe()`).
    pub exe: PathBuf,
    /// Trials at once.
    pub jobs: usize,
    /// CPU threads per trial (`--threads` of the child).
    pub threads: usize,
    pub data_dir: Option<PathBuf>,
    pub backend: Option<Backend>,
    /// The trials' TensorBoard sessions ([`hparams::Sessions::new`] over the whole sweep).
    pub sessions: hparams::Sessions,
}

/// How one trial ended in this invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Finished before; not run again.
    Skipped,
    Finished {
        seconds: f64,
    },
    Failed {
        exit_code: i32,
    },
    /// Not started because the sweep was asked to stop.
    NotStarted,
    /// Claimed by another sweep process on the same directory (or its trainer still holds the
    /// run): left to it.
    Elsewhere,
}

/// A trial's claim: the sweep process that runs the trial holds an exclusive lock on this file
/// in its directory, from before it touches anything there until the trial's end. The lock
/// (`flock`) goes with the process however it ends, `kill -9` included.
const CLAIM_FILE: &str = ".sweep-claim";

/// Claims the trial in `dir` for this process: the open, locked claim file, or `None` when
/// another process holds it.
fn claim(dir: &Path) -> Result<Option<std::fs::File>> {
    std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let path = dir.join(CLAIM_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .read(true)
        .open(&path)
        .map_err(Error::io(format!("opening {}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(Error::io(format!("locking {}", path.display()))(e))
        }
    }
}

/// Whether a trainer holds the run in `dir` (its `.lock`): the trainer of a sweep process that
/// was killed, still writing its last checkpoint.
fn trainer_holds(dir: &Path) -> bool {
    let Ok(file) = OpenOptions::new()
        .write(true)
        .read(true)
        .open(dir.join(crate::run::LOCK_FILE))
    else {
        return false;
    };
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// The directory of a trial: `<label>-s<seed>-<hash>`, or an existing directory of the same
/// config under another label (labels depend on the other trials; the hash does not).
pub fn trial_dir(out: &Path, trial: &Trial) -> PathBuf {
    let wanted = out.join(trial.dir_name());
    if wanted.exists() {
        return wanted;
    }
    let suffix = format!("-s{}-{}", trial.config.seed, trial.hash);
    if let Ok(entries) = std::fs::read_dir(out) {
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(&suffix)
                && e.path().join(CONFIG_FILE).is_file()
                && crate::run::read_config(&e.path()).is_ok_and(|c| c == trial.config)
            {
                return e.path();
            }
        }
    }
    wanted
}

/// The manifest of all trials (every shard writes the same one).
pub fn manifest(name: &str, out: &Path, trials: &[Trial]) -> Manifest {
    Manifest {
        name: name.to_string(),
        trials: trials
            .iter()
            .map(|t| ManifestTrial {
                index: t.index,
                dir: trial_dir(out, t)
                    .file_name()
                    .expect("dir has a name")
                    .to_string_lossy()
                    .into_owned(),
                label: t.label.clone(),
                group: t.group.clone(),
                seed: t.config.seed,
                hash: t.hash.clone(),
                config: t.config.clone(),
            })
            .collect(),
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    if let Some(code) = status.code() {
        return code;
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return 128 + sig;
        }
    }
    1
}

/// Asks a child to stop the way a scheduler asks us (SIGTERM): it checkpoints and exits.
fn forward_term(pid: u32) {
    #[cfg(unix)]
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) only sends a signal; `pid` is a child this process started and has
        // not reaped yet, so the id cannot belong to another process. A child that has exited
        // already gets nothing (ESRCH), which is what we want.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    #[cfg(not(unix))]
    let _ = pid;
}

/// Runs one trial to its end; `Err` only for problems of the sweep itself.
fn run_one(out: &Path, trial: &Trial, opts: &RunOptions, stop: &StopFlag) -> Result<Outcome> {
    let dir = trial_dir(out, trial);
    let status = trial_status(&dir, &trial.config);
    if status == TrialStatus::Done {
        // A sweep directory from before TensorBoard files: give the HParams tab its session.
        if !dir.join(hparams::HPARAMS_FILE).exists() {
            let started = tensorboard::now();
            opts.sessions
                .write(&dir, trial, started, Some(SessionStatus::Success))?;
        }
        return Ok(Outcome::Skipped);
    }
    let Some(_claim) = claim(&dir)? else {
        return Ok(Outcome::Elsewhere);
    };
    if trainer_holds(&dir) {
        return Ok(Outcome::Elsewhere);
    }
    // Another process may have finished it since the check above.
    if trial_status(&dir, &trial.config) == TrialStatus::Done {
        return Ok(Outcome::Skipped);
    }
    let session_started = tensorboard::now();
    opts.sessions.write(&dir, trial, session_started, None)?;
    let _ = std::fs::remove_file(dir.join(STATUS_FILE));

    let mut cmd = Command::new(&opts.exe);
    cmd.arg("train");
    if dir.join(CONFIG_FILE).is_file() {
        let saved = crate::run::read_config(&dir)?;
        if saved != trial.config {
            return Err(Error::Other(format!(
                "{} holds a run of another config; move it away and rerun the sweep",
                dir.display()
            )));
        }
        cmd.arg("--resume").arg(&dir);
    } else {
        let config_path = dir.join("sweep-trial.json");
        write_atomic(&config_path, trial.config.to_json_pretty().as_bytes())?;
        cmd.arg("--config")
            .arg(&config_path)
            .arg("--run-dir")
            .arg(&dir);
    }
    cmd.args([
        "--threads",
        &opts.threads.to_string(),
        "--quiet",
        "--offline",
    ]);
    if let Some(d) = &opts.data_dir {
        cmd.arg("--data-dir").arg(d);
    }
    if let Some(b) = opts.backend {
        cmd.args(["--backend", b.name()]);
    }
    let log_path = dir.join("train.log");
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(Error::io(format!("opening {}", log_path.display())))?;
    let log_err = log
        .try_clone()
        .map_err(Error::io(format!("opening {}", log_path.display())))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .env_remove("MNIST_TRAIN_THREADS");
    // A sweep process that dies (even by `kill -9`) takes its trial down with a checkpoint,
    // so that the next sweep process on the directory resumes it. The signal follows the
    // thread that spawned the child, which waits for it below.
    crate::signals::terminate_with_parent(&mut cmd);

    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(Error::io(format!("starting {}", opts.exe.display())))?;
    let mut forwarded = false;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(Error::io("waiting for a trial"))? {
            break status;
        }
        if !forwarded && stop.requested().is_some_and(|(sig, _)| sig == "SIGTERM") {
            // A terminal's Ctrl-C reaches the whole process group; a scheduler's SIGTERM
            // may reach only us.
            forward_term(child.id());
            forwarded = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let code = exit_code(status);
    let interrupted = code == crate::error::exit::SIGINT || code == crate::error::exit::SIGTERM;
    let session_end = match code {
        0 if finished_summary(&dir, &trial.config).is_some() => Some(SessionStatus::Success),
        // Interrupted: still running as far as the sweep is concerned; a rerun resumes it.
        _ if interrupted => None,
        _ => Some(SessionStatus::Failure),
    };
    opts.sessions
        .write(&dir, trial, session_started, session_end)?;
    if code == 0 && finished_summary(&dir, &trial.config).is_some() {
        return Ok(Outcome::Finished {
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let code = if code == 0 { 1 } else { code };
    let last_line = std::fs::read_to_string(&log_path)
        .ok()
        .and_then(|t| {
            t.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(String::from)
        })
        .unwrap_or_default();
    // An interrupted trial is not a failed one: the next run resumes it.
    if !interrupted {
        let record = FailureRecord {
            exit_code: code,
            message: last_line,
        };
        write_atomic(
            &dir.join(STATUS_FILE),
            serde_json::to_string_pretty(&record)
                .expect("serializes")
                .as_bytes(),
        )?;
    }
    Ok(Outcome::Failed { exit_code: code })
}

/// Runs `trials` (this shard's), `opts.jobs` at a time, printing one line per trial.
/// Returns each trial's outcome, in the order given.
pub fn run(
    out: &Path,
    trials: &[&Trial],
    opts: &RunOptions,
    stop: &StopFlag,
) -> Result<Vec<Outcome>> {
    let outcomes: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; trials.len()]);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    // Every trial, then once more those another process held: it may have let go of them since
    // (finished, or killed with its trial checkpointed).
    let mut todo: Vec<usize> = (0..trials.len()).collect();
    for _pass in 0..2 {
        if todo.is_empty() {
            break;
        }
        run_pass(out, trials, &todo, opts, stop, &outcomes, &first_error);
        todo.retain(|&i| outcomes.lock().unwrap()[i] == Some(Outcome::Elsewhere));
    }
    if let Some(e) = first_error.into_inner().unwrap() {
        return Err(e);
    }
    Ok(outcomes
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|o| o.unwrap_or(Outcome::NotStarted))
        .collect())
}

/// Runs the trials `todo` (indices into `trials`), `opts.jobs` at a time, recording each
/// outcome and printing one line per trial.
fn run_pass(
    out: &Path,
    trials: &[&Trial],
    todo: &[usize],
    opts: &RunOptions,
    stop: &StopFlag,
    outcomes: &Mutex<Vec<Option<Outcome>>>,
    first_error: &Mutex<Option<Error>>,
) {
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let total = todo.len();
    std::thread::scope(|scope| {
        for _ in 0..opts.jobs.max(1).min(total.max(1)) {
            scope.spawn(|| {
                loop {
                    if stop.requested().is_some() || first_error.lock().unwrap().is_some() {
                        return;
                    }
                    let Some(&i) = todo.get(next.fetch_add(1, Ordering::SeqCst)) else {
                        return;
                    };
                    let trial = trials[i];
                    let result = run_one(out, trial, opts, stop);
                    let n = finished.fetch_add(1, Ordering::SeqCst) + 1;
                    let name = trial.dir_name();
                    match result {
                        Ok(outcome) => {
                            match &outcome {
                                Outcome::Skipped => {
                                    eprintln!("[{n}/{total}] {name}: already finished, skipped")
                                }
                                Outcome::Finished { seconds } => {
                                    let acc =
                                        finished_summary(&trial_dir(out, trial), &trial.config)
                                            .map(|s| {
                                                format!(
                                                    "test accuracy {:.2}%",
                                                    s.final_test_accuracy * 100.0
                                                )
                                            })
                                            .unwrap_or_default();
                                    eprintln!("[{n}/{total}] {name}: {acc} ({seconds:.1} s)")
                                }
                                Outcome::Failed { exit_code }
                                    if *exit_code == crate::error::exit::SIGINT
                                        || *exit_code == crate::error::exit::SIGTERM =>
                                {
                                    eprintln!(
                                        "[{n}/{total}] {name}: interrupted (exit {exit_code}); \
                                         checkpoint saved, rerun the sweep to resume"
                                    )
                                }
                                Outcome::Failed { exit_code } => eprintln!(
                                    "[{n}/{total}] {name}: FAILED (exit {exit_code}); see {}",
                                    trial_dir(out, trial).join("train.log").display()
                                ),
                                Outcome::Elsewhere => eprintln!(
                                    "[{n}/{total}] {name}: running in another sweep process, \
                                     left to it"
                                ),
                                Outcome::NotStarted => {}
                            }
                            outcomes.lock().unwrap()[i] = Some(outcome);
                        }
                        Err(e) => {
                            first_error.lock().unwrap().get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
}
