//! Attachments as one blob: each part a little-endian u32 length followed by its bytes. Used
//! for the plain `attachments` column and inside a sealed payload.

/// Attachments as one blob: each is a little-endian u32 length followed by its bytes.
pub(super) fn pack(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 4).sum());
    for p in parts {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// The inverse of [`pack`]; a truncated blob yields the parts that are whole.
pub(super) fn unpack(mut blob: &[u8]) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    while blob.len() >= 4 {
        let len = u32::from_le_bytes([blob[0], blob[1], blob[2], blob[3]]) as usize;
        blob = &blob[4..];
        if blob.len() < len {
            break;
        }
        parts.push(blob[..len].to_vec());
        blob = &blob[len..];
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_round_trip() {
        let parts = vec![vec![], vec![1, 2, 3], vec![0; 70_000]];
        assert_eq!(unpack(&pack(&parts)), parts);
        let mut truncated = pack(&parts);
        truncated.truncate(12);
        assert_eq!(
            unpack(&truncated),
            vec![vec![], vec![1, 2, 3]],
            "whole parts only"
        );
    }
}
