//! The farmer's keys: `--keys FILE`, JSON
//! `{"farmer_secret_key": hex32, "pool_public_keys": [hex48, ...]}`
//! (`scripts/make-fixtures.sh` writes one as `fixtures/farmer-keys.json`).

use std::path::Path;

use plot_format::keys::{is_valid_g1, SecretKey};
use protocol::G1;

use super::SetupError;

/// Largest keys file we read.
pub const KEYS_FILE_BYTES_MAX: u64 = 1 << 20;
/// Most pool public keys (the protocol's default `Limits::pool_keys_max`).
pub const POOL_KEYS_MAX: usize = 1024;

/// The farmer secret key (its share of memo-plot signatures) and the pool keys we farm for.
#[derive(Clone)]
pub struct FarmerKeys {
    /// The farmer secret key.
    pub farmer_sk: SecretKey,
    /// The pool public keys sent in `HarvesterHandshake`; a proof's pool key must be one of
    /// them. Never empty, no duplicates, each a valid G1 point.
    pub pool_pubkeys: Vec<G1>,
}

impl std::fmt::Debug for FarmerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FarmerKeys")
            .field("farmer_pk", &hex::encode(self.farmer_sk.public_key()))
            .field("pool_pubkeys", &self.pool_pubkeys.len())
            .finish()
    }
}

impl FarmerKeys {
    /// Reads and checks the keys file; errors name the file.
    pub fn load(path: &Path) -> Result<FarmerKeys, SetupError> {
        let bad = |reason: String| SetupError::Keys { path: path.to_path_buf(), reason };
        let len_bytes = std::fs::metadata(path)
            .map_err(|source| SetupError::File { path: path.to_path_buf(), source })?
            .len();
        if len_bytes > KEYS_FILE_BYTES_MAX {
            return Err(bad(format!("larger than {KEYS_FILE_BYTES_MAX} bytes")));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|source| SetupError::File { path: path.to_path_buf(), source })?;
        FarmerKeys::parse(&text).map_err(bad)
    }

    /// Parses the JSON text; the error says what is wrong (never the secret).
    pub fn parse(text: &str) -> Result<FarmerKeys, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let sk_hex = v["farmer_secret_key"].as_str().ok_or("no \"farmer_secret_key\" string")?;
        let sk_bytes: [u8; 32] =
            decode_hex(sk_hex).ok_or("\"farmer_secret_key\" is not 32 bytes of hex")?;
        let farmer_sk =
            SecretKey::from_bytes(&sk_bytes).map_err(|e| format!("\"farmer_secret_key\": {e}"))?;
        let list = v["pool_public_keys"].as_array().ok_or("no \"pool_public_keys\" list")?;
        if list.is_empty() || list.len() > POOL_KEYS_MAX {
            return Err(format!("\"pool_public_keys\" must hold 1..={POOL_KEYS_MAX} keys"));
        }
        let mut pool_pubkeys: Vec<G1> = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            let pk: G1 = item
                .as_str()
                .and_then(decode_hex)
                .ok_or(format!("pool_public_keys[{i}] is not 48 bytes of hex"))?;
            if !is_valid_g1(&pk) {
                return Err(format!("pool_public_keys[{i}] is not a valid G1 point"));
            }
            if pool_pubkeys.contains(&pk) {
                return Err(format!("pool_public_keys[{i}] is listed twice"));
            }
            pool_pubkeys.push(pk);
        }
        Ok(FarmerKeys { farmer_sk, pool_pubkeys })
    }
}

fn decode_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.strip_prefix("0x").unwrap_or(text);
    hex::decode(text).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL_PK: &str = "96b7e508a1c390a73fb6c18dc17285529056dce3ed64be724cb4624fdddf4bcb\
                           31624e754f5320b2926ac31d2c9eb86a";

    fn json(sk: &str, pks: &[&str]) -> String {
        serde_json::json!({"farmer_secret_key": sk, "pool_public_keys": pks}).to_string()
    }

    #[test]
    fn parses_a_good_file() {
        let keys = FarmerKeys::parse(&json(&"11".repeat(32), &[POOL_PK])).expect("good");
        assert_eq!(keys.pool_pubkeys.len(), 1);
        assert_eq!(hex::encode(keys.pool_pubkeys[0]), POOL_PK);
        let with_prefix = format!("0x{}", "11".repeat(32));
        assert!(FarmerKeys::parse(&json(&with_prefix, &[POOL_PK])).is_ok());
    }

    #[test]
    fn rejects_bad_files() {
        let sk = "11".repeat(32);
        for (text, want) in [
            ("[".to_string(), "not JSON"),
            (json("11", &[POOL_PK]), "farmer_secret_key"),
            (json(&"ff".repeat(32), &[POOL_PK]), "farmer_secret_key"),
            (json(&sk, &[]), "1..="),
            (json(&sk, &["00"]), "pool_public_keys[0]"),
            (json(&sk, &[&"00".repeat(48)]), "valid G1"),
            (json(&sk, &[POOL_PK, POOL_PK]), "twice"),
        ] {
            let e = FarmerKeys::parse(&text).expect_err(&text);
            assert!(e.contains(want), "{e} lacks {want}");
        }
    }

    #[test]
    fn load_names_the_file() {
        let e = FarmerKeys::load(Path::new("/nonexistent/keys.json")).expect_err("missing");
        assert!(e.to_string().contains("/nonexistent/keys.json"), "{e}");
    }
}
