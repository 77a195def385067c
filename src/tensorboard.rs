//! TensorBoard event files: the TFRecord framing and the few protobuf messages TensorBoard reads
//! for scalars and for its HParams tab.
//!
//! There is no well-kept Rust crate for this (the `tensorboard-rs` crate is inactive and pulls an
//! old protobuf with a known vulnerability), and the format is small: each record is its length
//! (u64, little-endian), the masked CRC-32C of those 8 bytes, the serialized `Event`, and the
//! masked CRC-32C of that. TensorBoard's own Python reader checks the files in CI
//! (scripts/check-tensorboard.py); a unit test pins the bytes against ones its writer produced.

use crate::protobuf::Msg;

/// The first event of every file; TensorBoard reads the version from it.
const FILE_VERSION: &str = "brain.Event:2";

/// The data of the hparams plugin, as `tensorboard/plugins/hparams/metadata.py` names it.
const HPARAMS_PLUGIN: &str = "hparams";
pub const EXPERIMENT_TAG: &str = "_hparams_/experiment";
pub const SESSION_START_TAG: &str = "_hparams_/session_start_info";
pub const SESSION_END_TAG: &str = "_hparams_/session_end_info";

/// TFRecord's CRC: CRC-32C, rotated and offset so that a CRC of data holding CRCs is not
/// degenerate.
fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, its CRC, the data, its CRC.
fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// A framed `Event` at `wall_time` (seconds since the epoch) and `step` holding `summary`.
fn event(wall_time: f64, step: u64, summary: Msg) -> Vec<u8> {
    let mut e = Msg::default();
    e.double(1, wall_time).int(2, step).msg(5, summary);
    record(e.as_bytes())
}

/// The event that opens a file.
pub fn file_version(wall_time: f64) -> Vec<u8> {
    let mut e = Msg::default();
    e.double(1, wall_time).str(3, FILE_VERSION);
    record(e.as_bytes())
}

/// One event of scalars (`Summary.Value.simple_value`) at `step`.
pub fn scalars(wall_time: f64, step: u64, values: &[(impl AsRef<str>, f32)]) -> Vec<u8> {
    let mut summary = Msg::default();
    for (tag, v) in values {
        let mut value = Msg::default();
        value.str(1, tag.as_ref()).float(2, *v);
        summary.msg(1, value);
    }
    event(wall_time, step, summary)
}

/// A hyperparameter's value: the kinds `google.protobuf.Value` and the hparams plugin know.
#[derive(Debug, Clone, PartialEq)]
pub enum HValue {
    Number(f64),
    Text(String),
    Bool(bool),
}

impl HValue {
    /// `google.protobuf.Value`.
    fn encode(&self) -> Msg {
        let mut v = Msg::default();
        match self {
            HValue::Number(x) => v.double(2, *x),
            HValue::Text(s) => v.str(3, s),
            HValue::Bool(b) => v.int(4, *b as u64),
        };
        v
    }

    /// `tensorboard.hparams.DataType`.
    fn data_type(&self) -> u64 {
        match self {
            HValue::Text(_) => 1,
            HValue::Bool(_) => 2,
            HValue::Number(_) => 3,
        }
    }
}

/// A summary value carrying only hparams plugin data: TensorBoard files it under the plugin by
/// its metadata; the tensor is the plugin's empty placeholder (`metadata.NULL_TENSOR`).
fn hparams_event(wall_time: f64, tag: &str, field: u32, data: Msg) -> Vec<u8> {
    let mut plugin_data = Msg::default();
    // HParamsPluginData: version 0 (the default, so not written), then the one `data` field.
    plugin_data.msg(field, data);
    let mut plugin = Msg::default();
    plugin
        .str(1, HPARAMS_PLUGIN)
        .bytes(2, plugin_data.as_bytes());
    let mut metadata = Msg::default();
    metadata.msg(1, plugin);
    // TensorProto { dtype: DT_FLOAT, tensor_shape { dim { size: 0 } } }.
    let mut dim = Msg::default();
    dim.bytes(2, &[]);
    let mut tensor = Msg::default();
    tensor.int(1, 1).msg(2, dim);
    let mut value = Msg::default();
    value.str(1, tag).msg(8, tensor).msg(9, metadata);
    let mut summary = Msg::default();
    summary.msg(1, value);
    event(wall_time, 0, summary)
}

/// A hyperparameter of an experiment and the values its sessions take.
#[derive(Debug, Clone)]
pub struct HParamInfo {
    pub name: String,
    pub values: Vec<HValue>,
}

/// The experiment summary: which hyperparameters and metrics the HParams tab shows as columns.
/// Without it TensorBoard guesses them from the sessions, and shows no metric columns.
pub fn experiment(wall_time: f64, name: &str, hparams: &[HParamInfo], metrics: &[&str]) -> Vec<u8> {
    let mut exp = Msg::default();
    exp.double(3, wall_time);
    for h in hparams {
        let mut info = Msg::default();
        info.str(1, &h.name);
        if let Some(first) = h.values.first() {
            info.int(4, first.data_type());
            let mut list = Msg::default();
            for v in &h.values {
                list.msg(1, v.encode());
            }
            info.msg(5, list);
        }
        // `differs`: whether the sessions disagree on it; the tab can hide the others.
        info.int(7, (h.values.len() > 1) as u64);
        exp.msg(4, info);
    }
    for tag in metrics {
        let mut metric_name = Msg::default();
        metric_name.str(2, tag);
        let mut info = Msg::default();
        info.msg(1, metric_name);
        exp.msg(5, info);
    }
    exp.str(6, name);
    hparams_event(wall_time, EXPERIMENT_TAG, 2, exp)
}

/// A session's start: its hyperparameter values. A session is one run directory.
pub fn session_start(wall_time: f64, hparams: &[(String, HValue)]) -> Vec<u8> {
    let mut info = Msg::default();
    for (name, value) in hparams {
        // map<string, Value>: entries of { key = 1, value = 2 }.
        let mut entry = Msg::default();
        entry.str(1, name).msg(2, value.encode());
        info.msg(1, entry);
    }
    info.double(5, wall_time);
    hparams_event(wall_time, SESSION_START_TAG, 3, info)
}

/// How a session ended (`tensorboard.hparams.Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    Success = 1,
    Failure = 2,
    Running = 3,
}

pub fn session_end(wall_time: f64, status: SessionStatus) -> Vec<u8> {
    let mut info = Msg::default();
    info.int(1, status as u64).double(2, wall_time);
    hparams_event(wall_time, SESSION_END_TAG, 4, info)
}

/// Seconds since the Unix epoch, TensorBoard's `wall_time`.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The bytes TensorBoard's own writer produced (`RecordWriter` over an `Event` with
    /// `wall_time=1.5, step=3` and `summary.value.add(tag="train_loss", simple_value=0.25)`).
    #[test]
    fn scalar_record_matches_tensorboards_writer() {
        let bytes = scalars(1.5, 3, &[("train_loss", 0.25)]);
        assert_eq!(
            hex(&bytes),
            "200000000000000029eda95009000000000000f83f10032a130a110a0a747261696e5f6c6f7373\
             150000803ee8039a3f"
        );
    }

    /// The masked CRC of the empty string and of "a", as TensorFlow's `crc32c::Mask` gives.
    #[test]
    fn masked_crc_of_known_inputs() {
        // crc32c("") = 0 → mask = 0xa282ead8; crc32c("a") = 0xc1d04330.
        assert_eq!(masked_crc(b""), 0xa282_ead8);
        assert_eq!(
            masked_crc(b"a"),
            0xc1d0_4330u32.rotate_right(15).wrapping_add(0xa282_ead8)
        );
    }

    /// HParamsPluginData bytes from TensorBoard's own protos: a session start with
    /// `hparams = {"lr": 0.01, "init": "he"}` and `start_time_secs = 2.0`.
    #[test]
    fn session_start_matches_tensorboards_protos() {
        let bytes = session_start(
            2.0,
            &[
                ("lr".into(), HValue::Number(0.01)),
                ("init".into(), HValue::Text("he".into())),
            ],
        );
        let want = "1a280a0f0a026c721209117b14ae47e17a843f0a0c0a04696e697412041a02686529\
                    0000000000000040";
        assert!(hex(&bytes).contains(want), "{}", hex(&bytes));
        assert!(hex(&bytes).contains(&hex(SESSION_START_TAG.as_bytes())));
    }

    #[test]
    fn records_frame_their_length_and_data() {
        let r = record(b"hello");
        assert_eq!(r.len(), 8 + 4 + 5 + 4);
        assert_eq!(u64::from_le_bytes(r[..8].try_into().unwrap()), 5);
        assert_eq!(&r[12..17], b"hello");
    }
}
