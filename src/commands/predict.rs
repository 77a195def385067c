//! `mnist-train predict`: classify image files and test-set images with a checkpoint.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Tensor;

use crate::cli::PredictArgs;
use crate::data::preprocess::{self, IMAGE_EXTENSIONS};
use crate::data::{IMAGE_PIXELS, NUM_CLASSES};
use crate::error::{Error, Result};

/// One image to classify: where it came from and its 28×28 pixels.
struct Input {
    source: Source,
    pixels: [u8; IMAGE_PIXELS],
}

enum Source {
    File(PathBuf),
    Test { index: usize, label: u8 },
}

/// The files named, with each directory replaced by its image files (sorted).
/// The image files `paths` name, a directory standing for the images in it; with the
/// directories that could not be listed, which count as unreadable inputs.
fn expand(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<(PathBuf, std::io::Error)>) {
    let mut out = Vec::new();
    let mut unlisted = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = match std::fs::read_dir(path) {
                Ok(entries) => entries,
                Err(e) => {
                    unlisted.push((path.clone(), e));
                    continue;
                }
            };
            let mut found: Vec<PathBuf> =
                entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
            found.retain(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            });
            found.sort();
            out.extend(found);
        } else {
            out.push(path.clone());
        }
    }
    (out, unlisted)
}

pub fn run(args: PredictArgs) -> Result<()> {
    if args.files.is_empty() && args.test_index.is_empty() {
        return Err(Error::Usage(
            "predict needs image files (or directories) or --test-index N".into(),
        ));
    }
    if args.top == 0 || args.top > NUM_CLASSES {
        return Err(Error::OutOfRange {
            key: "top",
            value: args.top.to_string(),
            allowed: format!("must be in 1..={NUM_CLASSES}"),
        });
    }
    let (_, device) = super::setup_runtime(&args.runtime)?;
    let loaded = super::load_models(&args.checkpoint, &device)?;
    let config = &loaded[0].checkpoint.state.config;
    let names = config.dataset.class_names();

    let mut inputs = Vec::new();
    let (files, unlisted) = expand(&args.files);
    let mut unreadable = unlisted.len();
    for (dir, e) in &unlisted {
        eprintln!("error: {}: {e}", dir.display());
    }
    for file in &files {
        match preprocess::load(file) {
            Ok(pixels) => inputs.push(Input {
                source: Source::File(file.clone()),
                pixels,
            }),
            Err(e) => {
                unreadable += 1;
                eprintln!("error: {}: {e}", file.display());
            }
        }
    }
    if !args.test_index.is_empty() {
        let source = super::data_source_for_run(
            &args.data,
            &super::run_of(&args.checkpoint[0]),
            config.dataset,
        );
        let test = crate::data::load(config.dataset, &source)?.test;
        for &index in &args.test_index {
            if index >= test.len() {
                return Err(Error::OutOfRange {
                    key: "test_index",
                    value: index.to_string(),
                    allowed: format!(
                        "the test set has {} images (0..={})",
                        test.len(),
                        test.len() - 1
                    ),
                });
            }
            let mut pixels = [0u8; IMAGE_PIXELS];
            pixels.copy_from_slice(&test.images[index * IMAGE_PIXELS..(index + 1) * IMAGE_PIXELS]);
            inputs.push(Input {
                source: Source::Test {
                    index,
                    label: test.labels[index],
                },
                pixels,
            });
        }
    }
    if inputs.is_empty() {
        return Err(Error::DataUnavailable(format!(
            "none of the {} input(s) could be read as an image",
            files.len() + unlisted.len()
        )));
    }
    if let Some(dir) = &args.save_preprocessed {
        save_preprocessed(dir, &inputs)?;
    }

    let flat: Vec<f32> = inputs
        .iter()
        .flat_map(|i| i.pixels.iter().map(|&p| p as f32 / 255.0))
        .collect();
    let images = Tensor::<2>::from_data(
        burn::tensor::TensorData::new(flat, [inputs.len(), IMAGE_PIXELS]),
        &device,
    );
    let models: Vec<_> = loaded.iter().map(|l| l.model.valid()).collect();
    if models.len() > 1 {
        eprintln!(
            "ensemble of {} models: the softmax of the sum of their logits",
            models.len()
        );
    }
    let probabilities = crate::model::ensemble_probabilities(&models, images);
    for (input, probs) in inputs.iter().zip(&probabilities) {
        let mut ranked: Vec<usize> = (0..NUM_CLASSES).collect();
        ranked.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
        let prediction = ranked[0];
        if args.json {
            let mut json = serde_json::json!({
                "prediction": prediction,
                "class_name": names[prediction],
                "probabilities": probs,
            });
            match &input.source {
                Source::File(f) => json["file"] = f.display().to_string().into(),
                Source::Test { index, label } => {
                    json["test_index"] = (*index).into();
                    json["label"] = (*label).into();
                }
            }
            crate::outln!("{json}");
        } else {
            let what = match &input.source {
                Source::File(f) => f.display().to_string(),
                Source::Test { index, label } => {
                    format!("test image {index} (label {})", names[*label as usize])
                }
            };
            let top: Vec<String> = ranked[..args.top]
                .iter()
                .map(|&c| format!("{} {:.3}", names[c], probs[c]))
                .collect();
            crate::outln!("{what}: {} ({})", names[prediction], top.join(", "));
        }
    }
    // As grep and ripgrep do: every readable input is answered, and the exit code still tells
    // a script that something was not.
    if unreadable > 0 {
        return Err(Error::DataUnavailable(format!(
            "{unreadable} of {} input(s) could not be read; the others were classified",
            files.len() + unlisted.len()
        )));
    }
    Ok(())
}

fn save_preprocessed(dir: &Path, inputs: &[Input]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    for input in inputs {
        let name = match &input.source {
            Source::File(f) => format!(
                "{}.png",
                f.file_stem()
                    .map_or("image".into(), |s| s.to_string_lossy())
            ),
            Source::Test { index, .. } => format!("test-{index}.png"),
        };
        let path = dir.join(name);
        preprocess::to_image(&input.pixels)
            .save(&path)
            .map_err(|e| Error::Other(format!("writing {}: {e}", path.display())))?;
    }
    Ok(())
}
