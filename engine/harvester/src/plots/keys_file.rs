//! The keys file: plot secret keys for plots made in the original design (an empty memo, plot
//! id = sha256(pool public key ++ plot public key), the plot's secret key kept by the farmer).
//!
//! ```toml
//! [[plot]]
//! file = "name.plot"             # a file name, matched under every plot folder, or an absolute path
//! plot_secret_key = "<64 hex>"
//! pool_public_key = "<96 hex>"
//! ```
//!
//! Everything is checked when the file is loaded: the hex, the lengths, the secret key (below
//! the group order) and the pool key (a valid G1 point). Error messages name the file and the
//! entry but never echo a value: the TOML parser's own message is reduced to its first line and
//! a line number, so that a mistyped secret key does not end up in a log.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

use plot_format::keys::{self, SecretKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::PlotsError;

/// Largest keys file read.
pub(crate) const KEYS_FILE_BYTES_MAX: u64 = 64 << 20;

/// One `[[plot]]` entry, checked.
#[derive(Debug)]
pub(crate) struct KeyEntry {
    /// As written in the file (for messages).
    pub(crate) file: String,
    pub(crate) plot_secret_key: SecretKey,
    pub(crate) plot_public_key: [u8; 48],
    pub(crate) pool_public_key: [u8; 48],
    /// sha256(pool_public_key ++ plot_public_key): the id a plot of this entry must have.
    pub(crate) plot_id: [u8; 32],
}

/// The loaded keys file (empty without one).
#[derive(Debug, Default)]
pub(crate) struct KeysFile {
    entries: Vec<KeyEntry>,
    by_name: HashMap<OsString, usize>,
    by_path: HashMap<PathBuf, usize>,
}

impl KeysFile {
    /// Reads and checks the keys file at `path`; at most `entries_max` entries.
    pub(crate) fn load(path: &Path, entries_max: usize) -> Result<KeysFile, PlotsError> {
        let file = std::fs::File::open(path)
            .map_err(|source| PlotsError::KeysFileRead { path: path.to_owned(), source })?;
        let mut text = String::new();
        file.take(KEYS_FILE_BYTES_MAX + 1)
            .read_to_string(&mut text)
            .map_err(|source| PlotsError::KeysFileRead { path: path.to_owned(), source })?;
        if text.len() as u64 > KEYS_FILE_BYTES_MAX {
            return Err(PlotsError::KeysFile {
                path: path.to_owned(),
                reason: format!("larger than {KEYS_FILE_BYTES_MAX} bytes"),
            });
        }
        Self::parse(path, &text, entries_max)
    }

    /// Parses keys file text; `path` is only for messages.
    pub(crate) fn parse(
        path: &Path,
        text: &str,
        entries_max: usize,
    ) -> Result<KeysFile, PlotsError> {
        let file_error = |reason: String| PlotsError::KeysFile { path: path.to_owned(), reason };
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            // The message's first line says what is wrong; later lines quote the text.
            let message = e.message().lines().next().unwrap_or("").to_owned();
            match e.span() {
                Some(span) => {
                    let line = text.get(..span.start).map_or(0, |t| t.matches('\n').count()) + 1;
                    file_error(format!("not valid TOML at line {line}: {message}"))
                }
                None => file_error(format!("not valid TOML: {message}")),
            }
        })?;
        let mut keys = KeysFile::default();
        for (name, value) in &table {
            if name != "plot" {
                return Err(file_error(format!(
                    "unknown key `{name}` (expected [[plot]] entries)"
                )));
            }
            let Some(items) = value.as_array() else {
                return Err(file_error("`plot` must be an array of tables ([[plot]])".into()));
            };
            if items.len() > entries_max {
                return Err(file_error(format!(
                    "{} entries, more than plots_max ({entries_max})",
                    items.len()
                )));
            }
            for (i, item) in items.iter().enumerate() {
                let entry = parse_entry(item, i + 1).map_err(|(file, reason)| {
                    PlotsError::KeysFileEntry { path: path.to_owned(), index: i + 1, file, reason }
                })?;
                keys.insert(entry).map_err(|(file, reason)| PlotsError::KeysFileEntry {
                    path: path.to_owned(),
                    index: i + 1,
                    file,
                    reason,
                })?;
            }
        }
        Ok(keys)
    }

    /// The entry for the plot at `path`: by absolute path first, then by file name.
    pub(crate) fn lookup(&self, path: &Path) -> Option<&KeyEntry> {
        let index = self
            .by_path
            .get(path)
            .or_else(|| path.file_name().and_then(|name| self.by_name.get(name)))?;
        self.entries.get(*index)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn insert(&mut self, entry: KeyEntry) -> Result<(), (String, String)> {
        let index = self.entries.len();
        let path = Path::new(&entry.file);
        let previous = if path.is_absolute() {
            self.by_path.insert(path.to_owned(), index)
        } else {
            self.by_name.insert(OsString::from(&entry.file), index)
        };
        if let Some(previous) = previous {
            return Err((
                entry.file,
                format!("a second entry for this file (the first is entry {})", previous + 1),
            ));
        }
        self.entries.push(entry);
        Ok(())
    }
}

/// Checks one `[[plot]]` table; `number` counts from 1. Errors are (file, reason).
fn parse_entry(item: &toml::Value, number: usize) -> Result<KeyEntry, (String, String)> {
    let unnamed = || format!("entry {number}");
    let Some(table) = item.as_table() else {
        return Err((unnamed(), "not a table".into()));
    };
    let string = |field: &str| table.get(field).and_then(toml::Value::as_str);
    let Some(file) = string("file") else {
        return Err((unnamed(), "`file` is missing or not a string".into()));
    };
    let file = file.to_owned();
    let fail = |reason: &str| Err((file.clone(), reason.to_owned()));
    for key in table.keys() {
        if !["file", "plot_secret_key", "pool_public_key"].contains(&key.as_str()) {
            return fail(&format!("unknown field `{key}`"));
        }
    }
    let path = Path::new(&file);
    let is_name = path.file_name().is_some_and(|name| name == path.as_os_str());
    if !(is_name || path.is_absolute()) || path.file_name().is_none() {
        return fail("`file` must be a plot file name or an absolute path");
    }
    let Some(secret_hex) = string("plot_secret_key") else {
        return fail("`plot_secret_key` is missing or not a string");
    };
    let Some(pool_hex) = string("pool_public_key") else {
        return fail("`pool_public_key` is missing or not a string");
    };
    // Wiped when dropped, on every path.
    let mut secret = Zeroizing::new([0u8; 32]);
    // The hex crate's message would quote the bad digit: say it ourselves.
    if hex::decode_to_slice(secret_hex, &mut secret[..]).is_err() {
        return fail("`plot_secret_key` is not 64 hex digits");
    }
    let plot_secret_key = SecretKey::from_bytes(&secret);
    drop(secret);
    let Ok(plot_secret_key) = plot_secret_key else {
        return fail(
            "`plot_secret_key` is not a valid BLS secret key (at or above the group order)",
        );
    };
    let mut pool_public_key = [0u8; 48];
    if hex::decode_to_slice(pool_hex, &mut pool_public_key).is_err() {
        return fail("`pool_public_key` is not 96 hex digits");
    }
    if !keys::is_valid_g1(&pool_public_key) {
        return fail("`pool_public_key` is not a valid compressed G1 point");
    }
    let plot_public_key = plot_secret_key.public_key();
    let plot_id =
        Sha256::new().chain_update(pool_public_key).chain_update(plot_public_key).finalize();
    Ok(KeyEntry {
        file,
        plot_secret_key,
        plot_public_key,
        pool_public_key,
        plot_id: plot_id.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SK: &str = "41edcd36ffa1fb983346054f97af61bd48e1d5bac30909632d27a0a1c321694a";
    const POOL: &str = "96b7e508a1c390a73fb6c18dc17285529056dce3ed64be724cb4624fdddf4bcb31624e754f5320b2926ac31d2c9eb86a";

    fn entry(file: &str, sk: &str, pool: &str) -> String {
        format!("[[plot]]\nfile = \"{file}\"\nplot_secret_key = \"{sk}\"\npool_public_key = \"{pool}\"\n")
    }

    fn parse(text: &str) -> Result<KeysFile, PlotsError> {
        KeysFile::parse(Path::new("/etc/keys.toml"), text, 10)
    }

    /// The error text: names the file, never contains the secret.
    fn error(text: &str) -> String {
        let message = parse(text).unwrap_err().to_string();
        assert!(message.contains("/etc/keys.toml"), "{message}");
        assert!(!message.contains(&SK[..16]), "secret leaked: {message}");
        message
    }

    #[test]
    fn parses_and_finds_entries() {
        let text = entry("a.plot", SK, POOL) + &entry("/plots/b.plot", SK, POOL);
        let keys = parse(&text).unwrap();
        assert_eq!(keys.len(), 2);
        let a = keys.lookup(Path::new("/any/where/a.plot")).unwrap();
        assert_eq!(a.file, "a.plot");
        assert_eq!(hex::encode(a.pool_public_key), POOL);
        let expected: [u8; 32] = Sha256::new()
            .chain_update(a.pool_public_key)
            .chain_update(a.plot_public_key)
            .finalize()
            .into();
        assert_eq!(a.plot_id, expected);
        assert_eq!(keys.lookup(Path::new("/plots/b.plot")).unwrap().file, "/plots/b.plot");
        assert!(keys.lookup(Path::new("/other/b.plot")).is_none());
        assert!(!format!("{a:?}").contains(SK), "Debug must redact");
        assert_eq!(parse("").unwrap().len(), 0);
        assert_eq!(parse("# nothing\n").unwrap().len(), 0);
    }

    #[test]
    fn rejects_bad_entries_without_echoing_secrets() {
        let bad_hex = SK.replace('4', "g");
        let message = error(&entry("a.plot", &bad_hex, POOL));
        assert!(message.contains("entry 1") && message.contains("a.plot"), "{message}");
        assert!(message.contains("plot_secret_key"), "{message}");
        assert!(error(&entry("a.plot", &SK[2..], POOL)).contains("64 hex digits"));
        assert!(error(&entry("a.plot", &"ff".repeat(32), POOL)).contains("group order"));
        assert!(error(&entry("a.plot", SK, &POOL[2..])).contains("96 hex digits"));
        let off_curve = format!("{}{}", &POOL[..94], "00");
        assert!(error(&entry("a.plot", SK, &off_curve)).contains("G1"));
        assert!(error(&entry("sub/a.plot", SK, POOL)).contains("file name or an absolute path"));
        let twice = entry("a.plot", SK, POOL) + &entry("a.plot", SK, POOL);
        let message = error(&twice);
        assert!(message.contains("entry 2") && message.contains("first is entry 1"), "{message}");
        let extra = entry("a.plot", SK, POOL) + "farmer_secret_key = \"00\"\n";
        assert!(error(&extra).contains("unknown field `farmer_secret_key`"));
        assert!(error("[[plot]]\nplot_secret_key = \"00\"\n").contains("`file` is missing"));
        assert!(error("plots = 1\n").contains("unknown key `plots`"));
        let many: String = (0..11).map(|i| entry(&format!("{i}.plot"), SK, POOL)).collect();
        assert!(error(&many).contains("plots_max"));
    }

    #[test]
    fn syntax_errors_give_a_line_not_the_text() {
        let unquoted = format!("[[plot]]\nfile = \"a.plot\"\nplot_secret_key = {SK}\n");
        let message = error(&unquoted);
        assert!(message.contains("line 3"), "{message}");
        let unterminated = format!("[[plot]]\nfile = \"a.plot\"\nplot_secret_key = \"{SK}\n");
        assert!(error(&unterminated).contains("line 3"));
    }
}
