//! Plot keys: the plot memo, Chia's key derivation, the plot public key, the plot id and the
//! AugSchemeMPL signatures the harvester produces (`docs/plot-format.md` §17, and
//! `docs/protocol.md` section 12 for the signatures the farmer checks).
//!
//! * [`parse_memo`] splits the 128-byte (pool public key) or 112-byte (pool contract) memo and
//!   validates its points and its secret key the way `G1Element.from_bytes` /
//!   `PrivateKey.from_bytes` do (the identity point and the zero key are accepted; values at or
//!   above the field or group order, points off the curve or outside G1 are rejected).
//! * [`Memo::derive`] gives the [`PlotKeys`]: `local_sk = master / 12381 / 8444 / 3 / 0`
//!   (hardened), `plot_pk = local_pk + farmer_pk (+ taproot_pk for pool-contract plots)`.
//! * [`key_gen`] is Chia's `AugSchemeMPL.key_gen` (= blst `keygen_v3`, *not* blst's default
//!   v4 `key_gen` nor `derive_*_eip2333`, which give different keys), [`derive_child_sk`] the
//!   original EIP-2333 hardened derivation `key_gen(lamport_pk(parent, index))`.
//!
//! Secret key material only lives in [`SecretKey`] (blst zeroes its scalar on drop) and
//! [`SecretBytes`] (zeroed on drop); both print `<redacted>` under `Debug`.

use std::fmt;

use blst::min_pk;
use blst::BLST_ERROR;
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

/// A compressed G1 element (public key), 48 bytes.
pub type G1Bytes = [u8; 48];
/// A compressed G2 element (signature), 96 bytes.
pub type G2Bytes = [u8; 96];

/// Domain separation tag of Chia's AugSchemeMPL.
pub const AUG_DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_AUG_";
/// Hardened derivation path from the memo's master key to the plot's local key.
pub const LOCAL_SK_PATH: [u32; 4] = [12381, 8444, 3, 0];
/// Path of the farmer key below a wallet master key.
pub const FARMER_SK_PATH: [u32; 4] = [12381, 8444, 0, 0];
/// Path of the pool key below a wallet master key.
pub const POOL_SK_PATH: [u32; 4] = [12381, 8444, 1, 0];
/// Memo length of an "OG" plot: pool pk (48) ++ farmer pk (48) ++ master sk (32).
pub const MEMO_LEN_POOL_PK: usize = 128;
/// Memo length of a pool-contract plot: puzzle hash (32) ++ farmer pk (48) ++ master sk (32).
pub const MEMO_LEN_CONTRACT: usize = 112;
/// Compressed encoding of the G1 identity.
pub const G1_IDENTITY: G1Bytes = {
    let mut b = [0u8; 48];
    b[0] = 0xc0;
    b
};
/// Compressed encoding of the G2 identity (the aggregate of no signatures).
pub const G2_IDENTITY: G2Bytes = {
    let mut b = [0u8; 96];
    b[0] = 0xc0;
    b
};

/// Errors of memo parsing, key derivation and signature handling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("plot memo is {len} bytes, expected 128 (pool public key) or 112 (pool contract)")]
    MemoLength { len: usize },
    #[error("{field} is not a valid compressed BLS12-381 G1 point")]
    BadPoint { field: &'static str },
    #[error("{field} is not a valid BLS secret key (must be below the group order)")]
    BadSecretKey { field: &'static str },
    #[error("public key {index} of the list is not a valid compressed G1 point")]
    BadPublicKey { index: usize },
    #[error("signature {index} of the list is not a valid compressed G2 point")]
    BadSignature { index: usize },
    #[error("key_gen seed is {len} bytes, need at least 32")]
    SeedTooShort { len: usize },
    /// `expected` is the id in the plot header, `found` the id computed from the memo.
    #[error("plot id mismatch: header has {}, memo gives {}", to_hex(expected), to_hex(found))]
    IdMismatch { expected: [u8; 32], found: [u8; 32] },
}

// ---------------------------------------------------------------------------------------------
// Secret material
// ---------------------------------------------------------------------------------------------

/// 32 secret bytes (a serialized secret key). Zeroed on drop, never printed.
#[derive(Clone)]
pub struct SecretBytes([u8; 32]);

impl SecretBytes {
    /// The raw bytes (big-endian scalar). Do not log them.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes(<redacted>)")
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// A BLS12-381 secret key (scalar below the group order; zero allowed, as in Chia).
/// blst zeroes the scalar on drop; `Debug` prints `<redacted>`.
#[derive(Clone)]
pub struct SecretKey(min_pk::SecretKey);

impl SecretKey {
    /// Big-endian 32 bytes, rejected at or above the group order (`PrivateKey.from_bytes`).
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        if bytes.iter().all(|&b| b == 0) {
            // blst refuses the zero scalar; Chia accepts it.
            return Ok(Self(min_pk::SecretKey::default()));
        }
        min_pk::SecretKey::from_bytes(bytes)
            .map(Self)
            .map_err(|_| KeyError::BadSecretKey { field: "secret key" })
    }

    /// The big-endian 32-byte serialization.
    pub fn to_bytes(&self) -> SecretBytes {
        SecretBytes(self.0.to_bytes())
    }

    /// The compressed G1 public key.
    pub fn public_key(&self) -> G1Bytes {
        self.0.sk_to_pk().compress()
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

// ---------------------------------------------------------------------------------------------
// Key generation and derivation
// ---------------------------------------------------------------------------------------------

/// Chia's `AugSchemeMPL.key_gen(seed)`: IETF KeyGen draft 3 (blst `keygen_v3`, empty key info).
/// The seed must be at least 32 bytes.
pub fn key_gen(seed: &[u8]) -> Result<SecretKey, KeyError> {
    min_pk::SecretKey::key_gen_v3(seed, &[])
        .map(SecretKey)
        .map_err(|_| KeyError::SeedTooShort { len: seed.len() })
}

/// Chia's `AugSchemeMPL.derive_child_sk`: the original EIP-2333 hardened derivation,
/// `key_gen(lamport_pk(parent, index))`.
pub fn derive_child_sk(parent: &SecretKey, index: u32) -> SecretKey {
    let parent_bytes = parent.to_bytes();
    let lamport_pk = parent_to_lamport_pk(parent_bytes.expose_secret(), index);
    let child = key_gen(lamport_pk.expose_secret());
    child.unwrap_or_else(|_| unreachable!("the lamport pk is 32 bytes"))
}

/// Hardened derivation along `path`.
pub fn derive_path(master: &SecretKey, path: &[u32]) -> SecretKey {
    path.iter().fold(master.clone(), |sk, &index| derive_child_sk(&sk, index))
}

/// `sha256(lamport_pk_0 || lamport_pk_1)`, where lamport_pk_b is the concatenation of
/// `sha256(chunk)` over the 255 32-byte chunks of `HKDF(salt = index BE, IKM = ikm_b, L = 8160)`,
/// `ikm_0 = parent`, `ikm_1 = !parent`. For SHA-256, chunk i of the HKDF output is exactly
/// `T(i)`, so the 8160-byte buffers are never materialized.
fn parent_to_lamport_pk(parent: &[u8; 32], index: u32) -> SecretBytes {
    let salt = index.to_be_bytes();
    let mut outer = Sha256::new();
    let mut ikm = SecretBytes(*parent);
    for flip in [false, true] {
        if flip {
            for b in ikm.0.iter_mut() {
                *b = !*b;
            }
        }
        let prk = HmacSha256::new(&salt).mac(&[ikm.expose_secret()]);
        let expand = HmacSha256::new(prk.expose_secret());
        let mut t = SecretBytes([0; 32]);
        for counter in 1..=255u8 {
            let prev: &[u8] = if counter == 1 { &[] } else { t.expose_secret() };
            let next = expand.mac(&[prev, &[counter]]);
            t.0 = *next.expose_secret();
            outer.update(Sha256::digest(t.expose_secret()));
        }
    }
    SecretBytes(outer.finalize().into())
}

/// HMAC-SHA256 with the keyed inner and outer states precomputed.
struct HmacSha256 {
    inner: Sha256,
    outer: Sha256,
}

impl HmacSha256 {
    fn new(key: &[u8]) -> Self {
        let mut block = [0u8; 64];
        if key.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let mut pad = [0u8; 64];
        for (p, k) in pad.iter_mut().zip(&block) {
            *p = k ^ 0x36;
        }
        let inner = Sha256::new_with_prefix(pad);
        for (p, k) in pad.iter_mut().zip(&block) {
            *p = k ^ 0x5c;
        }
        let outer = Sha256::new_with_prefix(pad);
        block.zeroize();
        pad.zeroize();
        Self { inner, outer }
    }

    fn mac(&self, parts: &[&[u8]]) -> SecretBytes {
        let mut inner = self.inner.clone();
        for part in parts {
            inner.update(part);
        }
        let mut outer = self.outer.clone();
        outer.update(inner.finalize());
        SecretBytes(outer.finalize().into())
    }
}

// ---------------------------------------------------------------------------------------------
// Points
// ---------------------------------------------------------------------------------------------

/// Decode a compressed G1 point as `G1Element.from_bytes` does: canonical encoding, on the
/// curve, in the prime-order subgroup; the identity (`0xc0 00..`) is accepted.
fn decode_g1(bytes: &[u8]) -> Option<min_pk::PublicKey> {
    if bytes.len() != 48 {
        return None;
    }
    let pk = min_pk::PublicKey::from_bytes(bytes).ok()?;
    match pk.validate() {
        Ok(()) | Err(BLST_ERROR::BLST_PK_IS_INFINITY) => Some(pk),
        Err(_) => None,
    }
}

/// Decode a compressed G2 point (canonical, on the curve, in the subgroup; identity accepted).
fn decode_g2(bytes: &[u8]) -> Option<min_pk::Signature> {
    let sig = min_pk::Signature::from_bytes(bytes).ok()?;
    sig.validate(false).ok()?;
    Some(sig)
}

fn g1_field(bytes: &[u8], field: &'static str) -> Result<min_pk::PublicKey, KeyError> {
    decode_g1(bytes).ok_or(KeyError::BadPoint { field })
}

fn sum_g1(points: &[&min_pk::PublicKey]) -> G1Bytes {
    match min_pk::AggregatePublicKey::aggregate(points, false) {
        Ok(sum) => sum.to_public_key().compress(),
        Err(_) => G1_IDENTITY,
    }
}

/// Whether `bytes` is a valid compressed G1 point (see [`parse_memo`] for the rules).
pub fn is_valid_g1(bytes: &[u8; 48]) -> bool {
    decode_g1(bytes).is_some()
}

/// Sum of G1 points (`G1Element +`). The empty sum is the identity.
pub fn add_public_keys(pks: &[G1Bytes]) -> Result<G1Bytes, KeyError> {
    let points = pks
        .iter()
        .enumerate()
        .map(|(index, pk)| decode_g1(pk).ok_or(KeyError::BadPublicKey { index }))
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&min_pk::PublicKey> = points.iter().collect();
    Ok(sum_g1(&refs))
}

/// `AugSchemeMPL.aggregate`: the sum of the signatures. The empty aggregate is the identity.
pub fn aggregate_signatures(sigs: &[G2Bytes]) -> Result<G2Bytes, KeyError> {
    let points = sigs
        .iter()
        .enumerate()
        .map(|(index, sig)| decode_g2(sig).ok_or(KeyError::BadSignature { index }))
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&min_pk::Signature> = points.iter().collect();
    Ok(match min_pk::AggregateSignature::aggregate(&refs, false) {
        Ok(agg) => agg.to_signature().compress(),
        Err(_) => G2_IDENTITY,
    })
}

// ---------------------------------------------------------------------------------------------
// Signatures
// ---------------------------------------------------------------------------------------------

/// `AugSchemeMPL.sign(sk, msg, prepend_pk)`: `sk * H_aug(prepend_pk || msg)`. The harvester
/// signs with its local key and prepends the plot public key, so that the shares of the local,
/// farmer (and taproot) keys aggregate into a signature that verifies under the plot key.
pub fn sign_aug(sk: &SecretKey, msg: &[u8], prepend_pk: &G1Bytes) -> G2Bytes {
    sk.0.sign(msg, AUG_DST, prepend_pk).compress()
}

/// `AugSchemeMPL.sign(sk, msg)`: the signer's own public key is prepended.
pub fn sign_aug_own(sk: &SecretKey, msg: &[u8]) -> G2Bytes {
    sign_aug(sk, msg, &sk.public_key())
}

/// `AugSchemeMPL.verify(pk, msg, sig)`: checks `e(pk, H_aug(pk || msg)) == e(g1, sig)`.
/// False for malformed points and for the identity public key (as in Chia).
pub fn verify_aug(pk: &G1Bytes, msg: &[u8], sig: &G2Bytes) -> bool {
    let Some(pk_point) = decode_g1(pk) else {
        return false;
    };
    let Some(sig_point) = decode_g2(sig) else {
        return false;
    };
    sig_point.verify(false, msg, AUG_DST, pk, &pk_point, true) == BLST_ERROR::BLST_SUCCESS
}

// ---------------------------------------------------------------------------------------------
// Memo, plot keys, plot id
// ---------------------------------------------------------------------------------------------

/// Who the plot pays: an "OG" pool public key or a pool contract (plot NFT) puzzle hash.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    PublicKey(G1Bytes),
    ContractPuzzleHash([u8; 32]),
}

impl PoolKind {
    /// True for pool-contract plots (their plot key includes the taproot key).
    pub fn is_contract(&self) -> bool {
        matches!(self, PoolKind::ContractPuzzleHash(_))
    }

    /// The first part of the plot id preimage: the pool pk or the puzzle hash.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            PoolKind::PublicKey(pk) => pk,
            PoolKind::ContractPuzzleHash(ph) => ph,
        }
    }
}

impl fmt::Debug for PoolKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolKind::PublicKey(pk) => write!(f, "PublicKey({})", to_hex(pk)),
            PoolKind::ContractPuzzleHash(ph) => write!(f, "ContractPuzzleHash({})", to_hex(ph)),
        }
    }
}

/// A parsed plot memo. The master secret key is private and never printed.
#[derive(Clone)]
pub struct Memo {
    pub pool: PoolKind,
    pub farmer_public_key: G1Bytes,
    master_secret_key: SecretKey,
}

impl fmt::Debug for Memo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memo")
            .field("pool", &self.pool)
            .field("farmer_public_key", &Hex(&self.farmer_public_key))
            .field("master_secret_key", &self.master_secret_key)
            .finish()
    }
}

/// Parse a plot memo: 128 bytes (pool pk ++ farmer pk ++ master sk) or 112 bytes
/// (pool contract puzzle hash ++ farmer pk ++ master sk).
pub fn parse_memo(memo: &[u8]) -> Result<Memo, KeyError> {
    let (pool, rest) = match memo.len() {
        MEMO_LEN_POOL_PK => {
            let (pool, rest) = memo.split_at(48);
            g1_field(pool, "pool public key")?;
            (PoolKind::PublicKey(array(pool)), rest)
        }
        MEMO_LEN_CONTRACT => {
            let (ph, rest) = memo.split_at(32);
            (PoolKind::ContractPuzzleHash(array(ph)), rest)
        }
        len => return Err(KeyError::MemoLength { len }),
    };
    let (farmer, master) = rest.split_at(48);
    g1_field(farmer, "farmer public key")?;
    let master_bytes = SecretBytes(array(master));
    let master_secret_key = SecretKey::from_bytes(master_bytes.expose_secret())
        .map_err(|_| KeyError::BadSecretKey { field: "memo master secret key" })?;
    Ok(Memo { pool, farmer_public_key: array(farmer), master_secret_key })
}

impl Memo {
    /// Derive the plot's keys: `local_sk = master / 12381 / 8444 / 3 / 0` (hardened),
    /// `plot_pk = local_pk + farmer_pk`, plus `taproot_pk` for pool-contract plots.
    pub fn derive(&self) -> Result<PlotKeys, KeyError> {
        let farmer = g1_field(&self.farmer_public_key, "farmer public key")?;
        if let PoolKind::PublicKey(pool) = &self.pool {
            g1_field(pool, "pool public key")?;
        }
        let local_secret_key = derive_path(&self.master_secret_key, &LOCAL_SK_PATH);
        let local = local_secret_key.0.sk_to_pk();
        let local_public_key = local.compress();
        let (plot_public_key, taproot_secret_key) = if self.pool.is_contract() {
            let taproot = taproot_sk(&local, &farmer);
            let taproot_pk = taproot.0.sk_to_pk();
            (sum_g1(&[&local, &farmer, &taproot_pk]), Some(taproot))
        } else {
            (sum_g1(&[&local, &farmer]), None)
        };
        Ok(PlotKeys {
            local_secret_key,
            local_public_key,
            farmer_public_key: self.farmer_public_key,
            plot_public_key,
            pool: self.pool,
            taproot_secret_key,
        })
    }
}

/// `generate_taproot_sk`: `key_gen(sha256(bytes(local + farmer) ++ bytes(local) ++ bytes(farmer)))`.
fn taproot_sk(local: &min_pk::PublicKey, farmer: &min_pk::PublicKey) -> SecretKey {
    let mut h = Sha256::new();
    h.update(sum_g1(&[local, farmer]));
    h.update(local.compress());
    h.update(farmer.compress());
    let seed: [u8; 32] = h.finalize().into();
    key_gen(&seed).unwrap_or_else(|_| unreachable!("the seed is 32 bytes"))
}

/// The keys of one plot. `Debug` shows the public keys only.
#[derive(Clone)]
pub struct PlotKeys {
    local_secret_key: SecretKey,
    local_public_key: G1Bytes,
    farmer_public_key: G1Bytes,
    plot_public_key: G1Bytes,
    pool: PoolKind,
    taproot_secret_key: Option<SecretKey>,
}

impl PlotKeys {
    /// The plot's local secret key (the harvester's signing key).
    pub fn local_secret_key(&self) -> &SecretKey {
        &self.local_secret_key
    }

    pub fn local_public_key(&self) -> &G1Bytes {
        &self.local_public_key
    }

    pub fn farmer_public_key(&self) -> &G1Bytes {
        &self.farmer_public_key
    }

    /// `local_pk + farmer_pk (+ taproot_pk)`: the key proofs of this plot are signed under.
    pub fn plot_public_key(&self) -> &G1Bytes {
        &self.plot_public_key
    }

    pub fn pool(&self) -> &PoolKind {
        &self.pool
    }

    /// The taproot secret key (pool-contract plots only; the farmer adds its share).
    pub fn taproot_secret_key(&self) -> Option<&SecretKey> {
        self.taproot_secret_key.as_ref()
    }

    /// `sha256(pool_pk ++ plot_pk)` or `sha256(puzzle_hash ++ plot_pk)`.
    pub fn plot_id(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.pool.as_bytes());
        h.update(self.plot_public_key);
        h.finalize().into()
    }

    /// The harvester's signature share: `AugSchemeMPL.sign(local_sk, msg, plot_pk)`.
    pub fn sign_local_share(&self, msg: &[u8]) -> G2Bytes {
        sign_aug(&self.local_secret_key, msg, &self.plot_public_key)
    }
}

impl fmt::Debug for PlotKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlotKeys")
            .field("local_secret_key", &self.local_secret_key)
            .field("local_public_key", &Hex(&self.local_public_key))
            .field("farmer_public_key", &Hex(&self.farmer_public_key))
            .field("plot_public_key", &Hex(&self.plot_public_key))
            .field("pool", &self.pool)
            .field("taproot_secret_key", &self.taproot_secret_key)
            .finish()
    }
}

/// Parse the memo, derive the keys and check that they reproduce the header's plot id.
pub fn check_plot_id(memo: &[u8], header_id: &[u8; 32]) -> Result<PlotKeys, KeyError> {
    let keys = parse_memo(memo)?.derive()?;
    let found = keys.plot_id();
    if &found != header_id {
        return Err(KeyError::IdMismatch { expected: *header_id, found });
    }
    Ok(keys)
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

struct Hex<'a>(&'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

fn to_hex(bytes: &[u8]) -> String {
    format!("{:?}", Hex(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_memo(len: usize) -> Vec<u8> {
        let farmer = key_gen(&[7u8; 32]).unwrap().public_key();
        let pool = key_gen(&[8u8; 32]).unwrap().public_key();
        let master = key_gen(&[9u8; 32]).unwrap().to_bytes();
        let mut memo = Vec::new();
        if len == MEMO_LEN_POOL_PK {
            memo.extend_from_slice(&pool);
        } else {
            memo.extend_from_slice(&[0x5a; 32]);
        }
        memo.extend_from_slice(&farmer);
        memo.extend_from_slice(master.expose_secret());
        memo
    }

    #[test]
    fn memo_lengths() {
        for len in [0, 1, 32, 80, 111, 113, 127, 129, 160] {
            assert_eq!(parse_memo(&vec![0u8; len]).unwrap_err(), KeyError::MemoLength { len });
        }
        let og = parse_memo(&sample_memo(128)).unwrap();
        assert!(matches!(og.pool, PoolKind::PublicKey(_)));
        let contract = parse_memo(&sample_memo(112)).unwrap();
        assert_eq!(contract.pool, PoolKind::ContractPuzzleHash([0x5a; 32]));
        assert_eq!(og.farmer_public_key, contract.farmer_public_key);
    }

    #[test]
    fn memo_bad_fields() {
        let mut memo = sample_memo(128);
        memo[0] = 0; // no compression flag
        assert_eq!(parse_memo(&memo).unwrap_err(), KeyError::BadPoint { field: "pool public key" });
        let mut memo = sample_memo(112);
        memo[32 + 47] ^= 1; // very likely off the curve or out of the subgroup
        assert_eq!(
            parse_memo(&memo).unwrap_err(),
            KeyError::BadPoint { field: "farmer public key" }
        );
        let mut memo = sample_memo(112);
        memo[80..].fill(0xff);
        assert_eq!(
            parse_memo(&memo).unwrap_err(),
            KeyError::BadSecretKey { field: "memo master secret key" }
        );
        let mut memo = sample_memo(112);
        memo[80..].fill(0);
        assert!(parse_memo(&memo).is_ok(), "Chia accepts the zero key");
    }

    #[test]
    fn debug_redacts_secrets() {
        let memo = sample_memo(112);
        let secret = to_hex(&memo[80..]);
        let parsed = parse_memo(&memo).unwrap();
        let keys = parsed.derive().unwrap();
        let local = to_hex(keys.local_secret_key().to_bytes().expose_secret());
        let taproot = to_hex(keys.taproot_secret_key().unwrap().to_bytes().expose_secret());
        let printed = [
            format!("{parsed:?}"),
            format!("{parsed:#?}"),
            format!("{keys:?}"),
            format!("{keys:#?}"),
            format!("{:?}", keys.local_secret_key()),
            format!("{:?}", keys.local_secret_key().to_bytes()),
        ];
        for text in &printed {
            assert!(text.contains("<redacted>"), "{text}");
            for s in [&secret, &local, &taproot] {
                assert!(!text.contains(s.as_str()), "secret leaked in {text}");
            }
        }
        assert!(printed[2].contains(&to_hex(keys.plot_public_key())));
    }

    #[test]
    fn key_gen_rejects_short_seed() {
        assert_eq!(key_gen(&[1u8; 31]).unwrap_err(), KeyError::SeedTooShort { len: 31 });
        assert!(key_gen(&[1u8; 32]).is_ok());
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        // RFC 4231 test case 2 (key "Jefe"), an independent published value.
        let mac = HmacSha256::new(b"Jefe").mac(&[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            to_hex(mac.expose_secret()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn id_mismatch_message_has_hex() {
        let memo = sample_memo(128);
        let keys = parse_memo(&memo).unwrap().derive().unwrap();
        assert_eq!(check_plot_id(&memo, &keys.plot_id()).unwrap().plot_id(), keys.plot_id());
        let err = check_plot_id(&memo, &[0xab; 32]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&"ab".repeat(32)), "{text}");
        assert!(text.contains(&to_hex(&keys.plot_id())), "{text}");
    }

    #[test]
    fn empty_sums_are_identities() {
        assert_eq!(add_public_keys(&[]).unwrap(), G1_IDENTITY);
        assert_eq!(aggregate_signatures(&[]).unwrap(), G2_IDENTITY);
        assert_eq!(
            add_public_keys(&[G1_IDENTITY, [0; 48]]).unwrap_err(),
            KeyError::BadPublicKey { index: 1 }
        );
    }
}
