//! BIP434 `feature` messages: one named feature a peer offers, sent between its `version` and
//! its `verack`.
//!
//! The payload is a `featureid` (a string of [`MIN_ID_LEN`] to [`MAX_ID_LEN`] bytes, printable
//! ASCII recommended) and `featuredata` (at most [`MAX_DATA_LEN`] bytes whose meaning belongs
//! to the feature), each with a minimal CompactSize length, and nothing after them. Peers
//! advertise them only to peers whose protocol version is at least [`FEATURE_VERSION`]; a node
//! must ignore the features it does not know.

use std::fmt;

use bitcoin::consensus::encode::{self, Decodable, Encodable, VarInt};

/// The protocol version from which a peer may send `feature` messages (BIP434).
pub const FEATURE_VERSION: u32 = 70017;
/// Shortest `featureid`, in bytes.
pub const MIN_ID_LEN: usize = 4;
/// Longest `featureid`, in bytes.
pub const MAX_ID_LEN: usize = 80;
/// Longest `featuredata`, in bytes.
pub const MAX_DATA_LEN: usize = 512;

/// A decoded `feature` message.
#[derive(Clone, PartialEq, Eq)]
pub struct Feature {
    /// The feature's identifier, as sent (not necessarily printable).
    pub id: Vec<u8>,
    /// The feature's data.
    pub data: Vec<u8>,
}

/// Why a `feature` payload was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FeatureError {
    /// A length is not a minimal CompactSize, or the payload ends inside a field.
    #[error("truncated or non-minimal feature payload")]
    Malformed,
    /// The `featureid` is shorter than [`MIN_ID_LEN`] or longer than [`MAX_ID_LEN`].
    #[error("featureid of {0} bytes (4 to 80 allowed)")]
    IdLength(u64),
    /// The `featuredata` is longer than [`MAX_DATA_LEN`].
    #[error("featuredata of {0} bytes (at most 512 allowed)")]
    DataLength(u64),
    /// Bytes follow the `featuredata`.
    #[error("{0} bytes after the featuredata")]
    TrailingBytes(usize),
}

impl Feature {
    /// A feature with `id` and `data`.
    pub fn new(id: impl Into<Vec<u8>>, data: impl Into<Vec<u8>>) -> Feature {
        Feature {
            id: id.into(),
            data: data.into(),
        }
    }

    /// Decodes a `feature` payload, with every length bound checked before anything is
    /// allocated.
    pub fn parse(payload: &[u8]) -> Result<Feature, FeatureError> {
        let mut r = payload;
        let id_len = read_len(&mut r)?;
        if !(MIN_ID_LEN as u64..=MAX_ID_LEN as u64).contains(&id_len) {
            return Err(FeatureError::IdLength(id_len));
        }
        let id = take(&mut r, id_len as usize)?;
        let data_len = read_len(&mut r)?;
        if data_len > MAX_DATA_LEN as u64 {
            return Err(FeatureError::DataLength(data_len));
        }
        let data = take(&mut r, data_len as usize)?;
        if !r.is_empty() {
            return Err(FeatureError::TrailingBytes(r.len()));
        }
        Ok(Feature::new(id, data))
    }

    /// The payload of this feature's message.
    pub fn to_payload(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.id.len() + self.data.len() + 2);
        for field in [&self.id, &self.data] {
            VarInt(field.len() as u64)
                .consensus_encode(&mut out)
                .expect("writing to a Vec cannot fail");
            out.extend_from_slice(field);
        }
        out
    }

    /// The identifier for display: printable ASCII as is, any other byte as `\xNN`.
    pub fn id_text(&self) -> String {
        printable(&self.id)
    }
}

impl fmt::Debug for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Feature({}, {} bytes)", self.id_text(), self.data.len())
    }
}

/// `bytes` with every byte outside printable ASCII written as `\xNN`.
pub fn printable(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        if (32..=126).contains(&b) && b != b'\\' {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

/// A CompactSize length; the `bitcoin` decoder refuses non-minimal encodings.
fn read_len(r: &mut &[u8]) -> Result<u64, FeatureError> {
    VarInt::consensus_decode(r)
        .map(|v| v.0)
        .map_err(|_: encode::Error| FeatureError::Malformed)
}

fn take<'a>(r: &mut &'a [u8], n: usize) -> Result<&'a [u8], FeatureError> {
    if r.len() < n {
        return Err(FeatureError::Malformed);
    }
    let (head, rest) = r.split_at(n);
    *r = rest;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_bounds() {
        let f = Feature::new(*b"BIP434", []);
        assert_eq!(f.to_payload(), b"\x06BIP434\x00");
        assert_eq!(Feature::parse(&f.to_payload()), Ok(f));
        let long = Feature::new(vec![b'x'; MAX_ID_LEN], vec![7; MAX_DATA_LEN]);
        let p = long.to_payload();
        // 80 fits one byte; 512 takes 0xfd and two bytes.
        assert_eq!(p.len(), 1 + 80 + 3 + 512);
        assert_eq!(Feature::parse(&p), Ok(long));
    }

    #[test]
    fn refuses_what_the_bip_forbids() {
        assert_eq!(Feature::parse(b""), Err(FeatureError::Malformed));
        assert_eq!(
            Feature::parse(b"\x03BIP\x00"),
            Err(FeatureError::IdLength(3))
        );
        let mut too_long = vec![81];
        too_long.extend([b'a'; 81]);
        too_long.push(0);
        assert_eq!(Feature::parse(&too_long), Err(FeatureError::IdLength(81)));
        // The declared data length is checked before the bytes are looked for.
        assert_eq!(
            Feature::parse(b"\x04BIP1\xfd\x01\x02"),
            Err(FeatureError::DataLength(513))
        );
        assert_eq!(
            Feature::parse(b"\x04BIP1\x02a"),
            Err(FeatureError::Malformed)
        );
        // featuredata is not optional.
        assert_eq!(Feature::parse(b"\x04BIP1"), Err(FeatureError::Malformed));
        assert_eq!(
            Feature::parse(b"\x04BIP1\x00zz"),
            Err(FeatureError::TrailingBytes(2))
        );
        // A length written in three bytes though one would do.
        assert_eq!(
            Feature::parse(b"\xfd\x04\x00BIP1\x00"),
            Err(FeatureError::Malformed)
        );
    }

    #[test]
    fn ids_display_safely() {
        assert_eq!(
            Feature::new(*b"ab\x00\\c\xff", []).id_text(),
            "ab\\x00\\x5cc\\xff"
        );
    }
}
