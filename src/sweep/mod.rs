//! Sweeps: many trainings from one spec, each a normal run directory, with a results table.
//!
//! A sweep file is JSON:
//!
//! ```json
//! {
//!   "name": "lecture",
//!   "base": {"eval_every": 10},
//!   "trials": [{"init": "xavier"}, {"init": "he", "dropout": 0.5}],
//!   "grid": {"lr": [0.001, 0.01]},
//!   "seeds": [0, 1, 2]
//! }
//! ```
//!
//! Trials are expanded as `trials × grid × seeds`: every trial entry is merged over the base,
//! every grid combination over that, then the seed. A key may not appear both in the grid and
//! in a trial entry of the file (which should win would be a guess); `--set` on the command line
//! overrides either. Each trial's identity is its resolved config: its directory is
//! `<label>-s<seed>-<hash>`, the hash over the canonical config JSON, so a changed spec never
//! reuses an old result and an unchanged one skips what is done.

pub mod hparams;
pub mod results;
pub mod runner;
pub mod shard;

pub use shard::{Shard, shard_trials};

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::{ExperimentConfig, KEY_ALIASES, KEYS, PartialConfig};
use crate::error::{Error, Result};

/// The sweep-file keys; anything else is an error.
const SWEEP_KEYS: &[&str] = &["name", "base", "base_config", "grid", "trials", "seeds"];

/// A parsed sweep: what to vary, before expansion.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepSpec {
    /// Names the default output directory (`runs/sweep-<name>`).
    pub name: String,
    /// The config under every trial.
    pub base: ExperimentConfig,
    /// Explicit partial configs, merged over the base; empty = one trial, the base.
    pub trials: Vec<PartialConfig>,
    /// Key → values; the cartesian product is applied over every trial. In the order given
    /// (a file's keys alphabetically, then `--set` keys in command-line order).
    pub grid: Vec<(String, Vec<Value>)>,
    /// Seeds; `None` keeps each trial's own seed.
    pub seeds: Option<Vec<u64>>,
}

/// One training of the sweep, fully resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    /// Position in the canonical order (trials × grid × seeds); sharding uses it.
    pub index: usize,
    /// Row label shared by all seeds of a config.
    pub label: String,
    /// Short hash of the config without its seed: the table row this trial belongs to.
    pub group: String,
    /// Short hash of the canonical config JSON: the trial's identity.
    pub hash: String,
    pub config: ExperimentConfig,
    /// The grid values of this trial, for the table (key, value).
    pub assignment: Vec<(String, Value)>,
}

impl Trial {
    /// `<label>-s<seed>-<hash>`.
    pub fn dir_name(&self) -> String {
        format!("{}-s{}-{}", self.label, self.config.seed, self.hash)
    }
}

/// One key's value as a partial config; the error names the problem (not the key).
fn partial(key: &str, value: &Value) -> std::result::Result<PartialConfig, String> {
    let mut m = Map::new();
    m.insert(key.to_string(), value.clone());
    serde_json::from_value::<PartialConfig>(Value::Object(m)).map_err(|e| e.to_string())
}

fn check_key(key: &str) -> std::result::Result<(), String> {
    if key == "seed" {
        return Err(
            "`seed` is set by the sweep's `seeds` list (on the command line: \
             --set seed=0,1,2)"
                .into(),
        );
    }
    if KEYS.contains(&key) || KEY_ALIASES.iter().any(|(old, _)| *old == key) {
        Ok(())
    } else {
        Err(format!(
            "unknown config key `{key}`, expected one of: {}",
            KEYS.join(", ")
        ))
    }
}

/// The canonical JSON of a config: compact, keys in declaration order, shortest floats.
pub fn canonical_json(config: &ExperimentConfig) -> String {
    serde_json::to_string(config).expect("config serializes")
}

/// First 8 hex digits of SHA-256 of the canonical config JSON.
pub fn config_hash(config: &ExperimentConfig) -> String {
    let digest = Sha256::digest(canonical_json(config).as_bytes());
    digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// A value as a piece of a directory name: `0.5`, `he`, `512x512`.
fn slug(value: &Value) -> String {
    let raw = match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(slug).collect::<Vec<_>>().join("x"),
        Value::Null => "none".into(),
        other => other.to_string(),
    };
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl SweepSpec {
    /// A sweep of the default config (one trial), to which `--set` adds a grid.
    pub fn empty(name: &str) -> Self {
        Self {
            name: name.into(),
            base: ExperimentConfig::default(),
            trials: Vec::new(),
            grid: Vec::new(),
            seeds: None,
        }
    }

    /// Reads and checks a sweep file; every error names the file and the key.
    pub fn from_file(path: &Path) -> Result<Self> {
        let err = |message: String| Error::ConfigFile {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(format!("cannot read sweep file: {e}")))?;
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("sweep")
            .to_string();
        Self::from_json(&text, &stem, path.parent().unwrap_or(Path::new("."))).map_err(err)
    }

    /// Parses sweep JSON; `base_config` paths are relative to `dir`.
    pub fn from_json(
        text: &str,
        default_name: &str,
        dir: &Path,
    ) -> std::result::Result<Self, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let Value::Object(top) = value else {
            return Err("a sweep file is a JSON object with keys base, grid, trials, seeds".into());
        };
        for key in top.keys() {
            if !SWEEP_KEYS.contains(&key.as_str()) {
                return Err(format!(
                    "unknown key `{key}`, expected one of: {}",
                    SWEEP_KEYS.join(", ")
                ));
            }
        }
        let mut spec = Self::empty(default_name);
        if let Some(name) = top.get("name") {
            let Some(name) = name.as_str() else {
                return Err("`name` must be a string".into());
            };
            let ok = !name.is_empty()
                && !name.starts_with('.')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !ok {
                return Err(format!(
                    "`name` {name:?}: letters, digits, '-', '_' and '.' only (it names a \
                     directory)"
                ));
            }
            spec.name = name.to_string();
        }
        match (top.get("base"), top.get("base_config")) {
            (Some(_), Some(_)) => {
                return Err("give either `base` or `base_config`, not both".into());
            }
            (Some(base), None) => {
                let overlay: PartialConfig =
                    serde_json::from_value(base.clone()).map_err(|e| format!("`base`: {e}"))?;
                overlay.apply_to(&mut spec.base);
            }
            (None, Some(Value::String(file))) => {
                let path = dir.join(file);
                spec.base = ExperimentConfig::from_file(&path)
                    .map_err(|e| format!("`base_config`: {e}"))?;
            }
            (None, Some(_)) => return Err("`base_config` must be a path (string)".into()),
            (None, None) => {}
        }
        if let Some(grid) = top.get("grid") {
            let Value::Object(grid) = grid else {
                return Err("`grid` must be an object: key → list of values".into());
            };
            if grid.is_empty() {
                return Err("`grid` is empty; leave it out, or give key → list of values".into());
            }
            for (key, values) in grid {
                check_key(key).map_err(|e| format!("`grid.{key}`: {e}"))?;
                let Value::Array(values) = values else {
                    return Err(format!("`grid.{key}` must be a list of values"));
                };
                if values.is_empty() {
                    return Err(format!("`grid.{key}` is an empty list"));
                }
                for (i, v) in values.iter().enumerate() {
                    partial(key, v).map_err(|e| format!("`grid.{key}[{i}]` = {v}: {e}"))?;
                }
                spec.grid.push((key.clone(), values.clone()));
            }
        }
        if let Some(trials) = top.get("trials") {
            let Value::Array(trials) = trials else {
                return Err("`trials` must be a list of partial configs".into());
            };
            if trials.is_empty() {
                return Err("`trials` is an empty list".into());
            }
            for (i, t) in trials.iter().enumerate() {
                let Value::Object(t) = t else {
                    return Err(format!(
                        "`trials[{i}]` must be an object (a partial config)"
                    ));
                };
                for (key, v) in t {
                    check_key(key).map_err(|e| format!("`trials[{i}].{key}`: {e}"))?;
                    partial(key, v).map_err(|e| format!("`trials[{i}].{key}` = {v}: {e}"))?;
                    if spec.grid.iter().any(|(k, _)| k == key) {
                        return Err(format!(
                            "`trials[{i}].{key}`: `{key}` is also in `grid`; set it in one \
                             place only"
                        ));
                    }
                }
                let entry: PartialConfig = serde_json::from_value(Value::Object(t.clone()))
                    .map_err(|e| format!("`trials[{i}]`: {e}"))?;
                spec.trials.push(entry);
            }
        }
        if let Some(seeds) = top.get("seeds") {
            let seeds: Vec<u64> = serde_json::from_value(seeds.clone())
                .map_err(|e| format!("`seeds` must be a list of integers >= 0: {e}"))?;
            if seeds.is_empty() {
                return Err("`seeds` is an empty list".into());
            }
            spec.seeds = Some(seeds);
        }
        Ok(spec)
    }

    /// Applies `--set key=v1,v2,..`: a grid axis (replacing the file's for that key and
    /// overriding trial entries), or the seeds for `seed`.
    pub fn apply_set(&mut self, set: &str) -> Result<()> {
        let (key, values) = parse_set(set)?;
        if key == "seed" || key == "seeds" {
            let seeds = values
                .iter()
                .map(|v| v.as_u64())
                .collect::<Option<Vec<u64>>>()
                .ok_or_else(|| Error::Usage(format!("--set {set}: seeds must be integers >= 0")))?;
            self.seeds = Some(seeds);
            return Ok(());
        }
        match self.grid.iter_mut().find(|(k, _)| *k == key) {
            Some((_, old)) => *old = values,
            None => self.grid.push((key, values)),
        }
        Ok(())
    }

    /// Expands, resolves and validates every trial, in canonical order: trials × grid × seeds.
    pub fn expand(&self) -> Result<Vec<Trial>> {
        let entries: Vec<PartialConfig> = if self.trials.is_empty() {
            vec![PartialConfig::default()]
        } else {
            self.trials.clone()
        };
        // Cartesian product of the grid, first key slowest.
        let mut combos: Vec<Vec<(String, Value)>> = vec![Vec::new()];
        for (key, values) in &self.grid {
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.push((key.clone(), v.clone()));
                        c
                    })
                })
                .collect();
        }

        struct Pending {
            config: ExperimentConfig,
            assignment: Vec<(String, Value)>,
            group: String,
        }
        let mut groups: Vec<Pending> = Vec::new();
        for (t, entry) in entries.iter().enumerate() {
            for combo in &combos {
                let describe = || {
                    let mut d = if self.trials.is_empty() {
                        String::from("trial")
                    } else {
                        format!("trials[{t}]")
                    };
                    for (k, v) in combo {
                        d.push_str(&format!(" {k}={v}"));
                    }
                    d
                };
                let mut config = self.base.clone();
                entry.apply_to(&mut config);
                for (k, v) in combo {
                    partial(k, v)
                        .map_err(|e| {
                            Error::Usage(format!("sweep {}: {}: {e}", self.name, describe()))
                        })?
                        .apply_to(&mut config);
                }
                config.validate().map_err(|e| {
                    Error::Usage(format!("sweep {}: {}: {e}", self.name, describe()))
                })?;
                let mut unseeded = config.clone();
                unseeded.seed = 0;
                let group = config_hash(&unseeded);
                groups.push(Pending {
                    config,
                    assignment: combo.clone(),
                    group,
                });
            }
        }

        // Row labels: the config's label, made unique where two different configs share it.
        let mut by_label: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for g in &groups {
            let entry = by_label.entry(g.config.label()).or_default();
            if !entry.contains(&g.group) {
                entry.push(g.group.clone());
            }
        }
        let mut labels: HashMap<String, String> = HashMap::new();
        for g in &groups {
            let base = g.config.label();
            let mut label = base.clone();
            if by_label[&base].len() > 1 {
                for (k, v) in &g.assignment {
                    label.push_str(&format!("-{k}{}", slug(v)));
                }
            }
            labels.insert(g.group.clone(), label);
        }
        // Still colliding (e.g. trial entries differing in a key the label does not show):
        // append the group hash.
        let mut count: HashMap<&str, Vec<&str>> = HashMap::new();
        for (group, label) in &labels {
            count
                .entry(label.as_str())
                .or_default()
                .push(group.as_str());
        }
        let collide: Vec<String> = labels
            .iter()
            .filter(|(_, l)| count[l.as_str()].len() > 1)
            .map(|(g, _)| g.clone())
            .collect();
        for g in collide {
            let l = labels.get_mut(&g).expect("present");
            l.push_str(&format!("-{}", &g[..6]));
        }

        let mut out = Vec::new();
        let mut seen = HashMap::new();
        for g in &groups {
            let seeds = self.seeds.clone().unwrap_or_else(|| vec![g.config.seed]);
            for seed in seeds {
                let mut config = g.config.clone();
                config.seed = seed;
                let hash = config_hash(&config);
                if let Some(first) = seen.insert(hash.clone(), out.len()) {
                    return Err(Error::Usage(format!(
                        "sweep {}: trials {first} and {} resolve to the same config ({}, seed \
                         {seed}); remove the duplicate",
                        self.name,
                        out.len(),
                        labels[&g.group]
                    )));
                }
                out.push(Trial {
                    index: out.len(),
                    label: labels[&g.group].clone(),
                    group: g.group.clone(),
                    hash,
                    config,
                    assignment: g.assignment.clone(),
                });
            }
        }
        Ok(out)
    }
}

/// Splits `a,b,[1,2],c` on the commas outside brackets.
fn split_top_level(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut current = String::new();
    for c in s.chars() {
        match c {
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            _ => {}
        }
        if c == ',' && depth == 0 {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts
}

/// Parses `--set key=v1,v2`: values are JSON where they parse as JSON (numbers, booleans,
/// `null`, `[256,256]`), strings otherwise (`he`); each is checked against the key's type.
pub fn parse_set(set: &str) -> Result<(String, Vec<Value>)> {
    let usage = |why: String| Error::Usage(format!("--set {set}: {why}"));
    let Some((key, values)) = set.split_once('=') else {
        return Err(usage(
            "expected KEY=VALUE[,VALUE..], e.g. --set init=he,xavier".into(),
        ));
    };
    let key = key.trim().replace('-', "_");
    if key.is_empty() {
        return Err(usage("missing key before `=`".into()));
    }
    let is_seed = key == "seed" || key == "seeds";
    if !is_seed {
        check_key(&key).map_err(usage)?;
    }
    let mut out = Vec::new();
    for raw in split_top_level(values) {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(usage(format!("empty value in `{values}`")));
        }
        let value = if key == "name" {
            Value::String(raw.to_string())
        } else {
            serde_json::from_str::<Value>(raw).unwrap_or_else(|_| Value::String(raw.to_string()))
        };
        if is_seed {
            if value.as_u64().is_none() {
                return Err(usage(format!("seed {raw} is not an integer >= 0")));
            }
        } else {
            partial(&key, &value).map_err(|e| usage(format!("`{key}` = {raw}: {e}")))?;
        }
        out.push(value);
    }
    Ok((key, out))
}

/// Default output directory of a sweep.
pub fn default_out(name: &str) -> PathBuf {
    Path::new("runs").join(format!("sweep-{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Init;

    fn spec(json: &str) -> std::result::Result<SweepSpec, String> {
        SweepSpec::from_json(json, "t", Path::new("."))
    }

    #[test]
    fn grid_is_a_cartesian_product_times_seeds() {
        let s =
            spec(r#"{"grid": {"init": ["he", "xavier"], "dropout": [0, 0.5]}, "seeds": [0, 1]}"#)
                .unwrap();
        let trials = s.expand().unwrap();
        assert_eq!(trials.len(), 8);
        assert_eq!(
            trials.iter().map(|t| t.index).collect::<Vec<_>>(),
            (0..8).collect::<Vec<_>>()
        );
        // Keys alphabetically (dropout first, slowest), then init, then seeds fastest.
        assert_eq!(trials[0].config.dropout, 0.0);
        assert_eq!(trials[0].config.init, Init::HeUniform);
        assert_eq!(trials[0].config.seed, 0);
        assert_eq!(trials[1].config.seed, 1);
        assert_eq!(trials[2].config.init, Init::XavierUniform);
        assert_eq!(trials[7].config.dropout, 0.5);
        let groups: std::collections::HashSet<_> = trials.iter().map(|t| &t.group).collect();
        assert_eq!(groups.len(), 4);
        assert_eq!(trials[0].group, trials[1].group);
        assert_eq!(trials[0].label, "relu-he-uniform");
        assert_eq!(trials[7].label, "relu-xavier-uniform-d0.5");
        assert!(trials[1].dir_name().starts_with("relu-he-uniform-s1-"));
    }

    #[test]
    fn trials_times_grid_and_base_merge() {
        let s = spec(
            r#"{"base": {"eval_every": 10, "epochs": 2},
                "trials": [{"name": "a", "init": "he"}, {"name": "b", "epochs": 1}],
                "grid": {"lr": [0.001, 0.01]}}"#,
        )
        .unwrap();
        let t = s.expand().unwrap();
        assert_eq!(t.len(), 4);
        assert!(t.iter().all(|t| t.config.eval_every == 10));
        assert_eq!(t[0].config.epochs, 2);
        assert_eq!(t[2].config.epochs, 1);
        assert_eq!(t[1].config.lr, 0.01);
        // Same name, different lr: the grid value disambiguates the label.
        assert_eq!(t[0].label, "a-lr0.001");
        assert_eq!(t[1].label, "a-lr0.01");
        assert_eq!(t[3].label, "b-lr0.01");
    }

    #[test]
    fn identity_is_the_config_hash() {
        let a = spec(r#"{"trials": [{"init": "he"}]}"#)
            .unwrap()
            .expand()
            .unwrap();
        let b = spec(r#"{"trials": [{"init": "he-uniform"}], "seeds": [0]}"#)
            .unwrap()
            .expand()
            .unwrap();
        assert_eq!(a[0].hash, b[0].hash, "aliases resolve to the same config");
        assert_eq!(a[0].dir_name(), b[0].dir_name());
        let c = spec(r#"{"trials": [{"init": "he", "lr": 0.002}]}"#)
            .unwrap()
            .expand()
            .unwrap();
        assert_ne!(a[0].hash, c[0].hash);
        assert_eq!(a[0].hash.len(), 8);
        assert_eq!(config_hash(&a[0].config), a[0].hash);
    }

    #[test]
    fn strict_errors_name_the_key() {
        let e = spec(r#"{"grids": {}}"#).unwrap_err();
        assert!(e.contains("unknown key `grids`"), "{e}");
        let e = spec(r#"{"grid": {}}"#).unwrap_err();
        assert!(e.contains("`grid` is empty"), "{e}");
        let e = spec(r#"{"grid": {"init": []}}"#).unwrap_err();
        assert!(e.contains("`grid.init` is an empty list"), "{e}");
        let e = spec(r#"{"grid": {"inti": ["he"]}}"#).unwrap_err();
        assert!(e.contains("`grid.inti`: unknown config key"), "{e}");
        let e = spec(r#"{"grid": {"init": ["he", "hee"]}}"#).unwrap_err();
        assert!(e.contains("`grid.init[1]`") && e.contains("hee"), "{e}");
        let e = spec(r#"{"trials": [{"dropuot": 0.5}]}"#).unwrap_err();
        assert!(e.contains("`trials[0].dropuot`"), "{e}");
        let e = spec(r#"{"trials": []}"#).unwrap_err();
        assert!(e.contains("`trials` is an empty list"), "{e}");
        let e = spec(r#"{"seeds": []}"#).unwrap_err();
        assert!(e.contains("`seeds`"), "{e}");
        let e = spec(r#"{"base": {"lr": "fast"}}"#).unwrap_err();
        assert!(e.contains("`base`"), "{e}");
        let e = spec(r#"{"grid": {"init": ["he"]}, "trials": [{"init": "xavier"}]}"#).unwrap_err();
        assert!(e.contains("also in `grid`"), "{e}");
        let e = spec(r#"{"grid": {"seed": [1]}}"#).unwrap_err();
        assert!(e.contains("seeds"), "{e}");
        // Out of range values are caught at expansion, before anything runs.
        let s = spec(r#"{"grid": {"dropout": [0.5, 1.5]}}"#).unwrap();
        let e = s.expand().unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("dropout=1.5"), "{e}");
        assert!(e.to_string().contains("`dropout`"), "{e}");
    }

    #[test]
    fn set_parses_values_against_the_config_types() {
        let (k, v) = parse_set("init=he,xavier").unwrap();
        assert_eq!(k, "init");
        assert_eq!(v, vec![Value::from("he"), Value::from("xavier")]);
        let (_, v) = parse_set("dropout=0,0.5").unwrap();
        assert_eq!(v, vec![Value::from(0), Value::from(0.5)]);
        let (_, v) = parse_set("hidden=[256,256],[512,512,512,512]").unwrap();
        assert_eq!(v.len(), 2);
        let (k, _) = parse_set("eval-every=5").unwrap();
        assert_eq!(k, "eval_every");
        let (_, v) = parse_set("name=1").unwrap();
        assert_eq!(v, vec![Value::from("1")]);
        for bad in [
            "init",
            "=he",
            "init=",
            "init=he,,xavier",
            "inti=he",
            "dropout=lots",
        ] {
            let e = parse_set(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
            assert!(e.to_string().starts_with(&format!("--set {bad}:")), "{e}");
        }
        let mut s = SweepSpec::empty("x");
        s.apply_set("init=he,xavier").unwrap();
        s.apply_set("seed=0,1,2").unwrap();
        assert_eq!(s.expand().unwrap().len(), 6);
        // --set replaces a file's grid axis.
        s.apply_set("init=he").unwrap();
        assert_eq!(s.expand().unwrap().len(), 3);
    }

    #[test]
    fn every_trial_runs_in_exactly_one_shard() {
        let s = spec(
            r#"{"trials": [{"init": "he"}, {"init": "xavier"}, {"activation": "tanh"}],
                "grid": {"dropout": [0, 0.5]}, "seeds": [0, 1, 2, 3, 4]}"#,
        )
        .unwrap();
        let trials = s.expand().unwrap();
        assert_eq!(trials.len(), 30);
        for n in 1..=7 {
            let mut runs = vec![0; trials.len()];
            for i in 0..n {
                for t in shard_trials(&trials, Some(Shard::new(i, n).unwrap())) {
                    runs[t.index] += 1;
                }
            }
            assert!(runs.iter().all(|&r| r == 1), "n={n}: {runs:?}");
        }
        assert_eq!(shard_trials(&trials, None).len(), 30);
        // The same spec expands to the same order everywhere.
        assert_eq!(s.expand().unwrap(), trials);
    }

    #[test]
    fn shard_specs_and_environments() {
        assert_eq!(Shard::parse("1/4").unwrap(), Shard { index: 1, count: 4 });
        for bad in ["4/4", "1", "a/2", "0/0", "-1/2"] {
            assert_eq!(Shard::parse(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(Shard::from_env(env(&[]), None).unwrap(), None);
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(
            Shard::from_env(slurm, None).unwrap(),
            Some(Shard { index: 2, count: 4 })
        );
        // `--array=0-6:2`: tasks 0, 2, 4, 6 are shards 0..3 of 4.
        let stepped = env(&[
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(
            Shard::from_env(stepped, None).unwrap(),
            Some(Shard { index: 2, count: 4 })
        );
        // Task 2 resubmitted alone (`--array=2`), the array's size given: still shard 2 of 4.
        let alone = env(&[
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_MIN", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "1"),
        ]);
        assert_eq!(
            Shard::from_env(alone, Some(4)).unwrap(),
            Some(Shard { index: 2, count: 4 })
        );
        let k8s = env(&[("JOB_COMPLETION_INDEX", "2")]);
        assert_eq!(
            Shard::from_env(k8s, Some(3)).unwrap(),
            Some(Shard { index: 2, count: 3 })
        );
        assert!(Shard::from_env(k8s, None).is_err());
        assert!(Shard::from_env(k8s, Some(2)).is_err());
    }
}
