//! A minimal protobuf encoder, for the few messages of ONNX files and TensorBoard event files.
//! Both formats need only the writing side of a handful of message types; `prost` would add a
//! build-time code generator (and `protoc`) for what fits in this file. Each user checks its
//! bytes against the format's own reader: onnxruntime and TensorBoard's Python package in CI.

/// A protobuf message being written: fields appended in order.
#[derive(Debug, Clone, Default)]
pub struct Msg(Vec<u8>);

impl Msg {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn key(&mut self, field: u32, wire: u8) {
        self.varint(((field as u64) << 3) | wire as u64);
    }
    /// A varint field: uint32/64, int32/64 (negative values take ten bytes, as protobuf
    /// writes them), enums and bools.
    pub fn int(&mut self, field: u32, v: u64) -> &mut Self {
        self.key(field, 0);
        self.varint(v);
        self
    }
    pub fn float(&mut self, field: u32, v: f32) -> &mut Self {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn double(&mut self, field: u32, v: f64) -> &mut Self {
        self.key(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bytes(&mut self, field: u32, b: &[u8]) -> &mut Self {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    pub fn str(&mut self, field: u32, s: &str) -> &mut Self {
        self.bytes(field, s.as_bytes())
    }
    pub fn msg(&mut self, field: u32, m: Msg) -> &mut Self {
        self.bytes(field, &m.0)
    }
    /// The encoded message.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_fields_encode_as_protobuf_does() {
        let mut m = Msg::default();
        m.int(1, 150);
        assert_eq!(
            m.as_bytes(),
            [0x08, 0x96, 0x01],
            "the protobuf guide's example"
        );
        let mut m = Msg::default();
        m.str(2, "testing");
        assert_eq!(m.as_bytes()[..2], [0x12, 0x07]);
        let mut m = Msg::default();
        m.float(2, 1.0);
        assert_eq!(m.as_bytes(), [0x15, 0x00, 0x00, 0x80, 0x3f]);
        let mut m = Msg::default();
        m.double(1, 1.5);
        assert_eq!(m.as_bytes(), [0x09, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f]);
    }
}
