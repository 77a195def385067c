//! The experiment-config parser and validator on arbitrary text: never panic; a config that
//! validates also labels, describes and round-trips through JSON exactly (run directories save
//! it as config.json and `--resume` reads it back).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mnist_train::config::ExperimentConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = ExperimentConfig::from_json(text) else {
        return;
    };
    // The label and architecture are built before validation too (run names).
    let _ = config.label();
    let _ = config.architecture();
    let _ = config.parameter_count();
    if config.validate().is_err() {
        return;
    }
    let json = config.to_json_pretty();
    let back = ExperimentConfig::from_json(&json).expect("a saved config parses");
    assert_eq!(
        back, config,
        "config.json round trip changed the config:\n{json}"
    );
    back.validate().expect("a saved valid config stays valid");
});
