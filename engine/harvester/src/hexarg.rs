//! Hex arguments.

pub(crate) fn bytes32(what: &str, text: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(text.trim()).map_err(|e| format!("{what}: not hex: {e}"))?;
    bytes.try_into().map_err(|b: Vec<u8>| format!("{what}: expected 32 bytes, got {}", b.len()))
}
