//! Mutual TLS between the harvester and the farmer, anchored in a private CA.
//!
//! `generate` makes the CA (or reuses one the operator already has) and one leaf certificate
//! for each side. Both leaves carry the client and the server EKU, so either side can dial.
//! `client_config` (harvester dials the farmer) and `server_config` (the farmer simulator
//! accepts harvesters) trust only that CA and always require the peer's certificate.
//!
//! Invariants:
//! - Configs are built with an explicit ring `CryptoProvider`; nothing installs a process-global
//!   provider.
//! - Key material never reaches an error message or a log line: PEM errors from key files are
//!   reduced to a fixed description before they are wrapped.
//! - Every file read is capped at `PEM_FILE_BYTES_MAX`; every chain at `CHAIN_CERTS_MAX`.
//! - Private keys are written mode 0600 through a temp file and a rename, so a crash leaves
//!   either the old file or the new one, never a torn key.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ::pem::{encode_config, EncodeConfig, LineEnding, Pem};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// The ALPN protocol both sides offer; a peer that offers something else is refused.
pub const ALPN: &[u8] = b"harvester/1";
/// `harvester/1` plus `ChallengeDone` after each challenge. The harvester offers both (this
/// first); a farmer that picks it gets `ChallengeDone`, an older one picks `harvester/1` (or
/// nothing) and never sees it.
pub const ALPN_V2: &[u8] = b"harvester/2";
/// The name the harvester expects in the farmer's certificate (a DNS SAN of `farmer.crt`).
pub const FARMER_SERVER_NAME: &str = "farmer";
/// The name in the harvester's certificate (a DNS SAN of `harvester.crt`).
pub const HARVESTER_SERVER_NAME: &str = "harvester";

/// Largest certificate or key file we read. Real ones are a few KiB.
pub const PEM_FILE_BYTES_MAX: u64 = 256 * 1024;
/// Most certificates taken from one PEM file (a leaf plus intermediates, or a CA bundle).
pub const CHAIN_CERTS_MAX: usize = 16;
/// How long generated certificates are valid for (about 10 years).
pub const VALIDITY_DAYS: i64 = 3650;
/// How far `not_before` is set in the past, to tolerate clock skew between hosts.
const BACKDATE_SECONDS: i64 = 3600;

const CA_COMMON_NAME: &str = "harvester private CA";
const CERT_FILE_MODE: u32 = 0o644;
const KEY_FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

/// Everything that can go wrong setting up TLS. Each variant names the file involved; none
/// carries key bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file does not exist.
    #[error("{}: missing", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file is larger than any certificate or key we accept.
    #[error("{}: larger than {limit_bytes} bytes, not a certificate or key file", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// `PEM_FILE_BYTES_MAX`.
        limit_bytes: u64,
    },
    /// The file is not well-formed PEM.
    #[error("{}: not PEM: {reason}", path.display())]
    NotPem {
        /// The file.
        path: PathBuf,
        /// What was wrong, without any of the file's content.
        reason: &'static str,
    },
    /// The file is PEM but holds no certificate.
    #[error("{}: no certificate found", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The file holds more certificates than `CHAIN_CERTS_MAX`.
    #[error("{}: more than {limit} certificates", path.display())]
    TooManyCertificates {
        /// The file.
        path: PathBuf,
        /// `CHAIN_CERTS_MAX`.
        limit: usize,
    },
    /// The file is PEM but holds no private key.
    #[error("{}: no private key found", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The certificate cannot be parsed as X.509.
    #[error("{}: certificate is not valid X.509", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The certificate given as a CA is not one (no `basicConstraints CA:true`).
    #[error("{}: not a CA certificate", path.display())]
    NotCa {
        /// The file.
        path: PathBuf,
    },
    /// The private key is not one rcgen can sign with (we expect PKCS#8 ECDSA or Ed25519).
    #[error("{}: unusable private key: {source}", path.display())]
    BadKey {
        /// The file.
        path: PathBuf,
        /// rcgen's reason (it never includes key bytes).
        source: rcgen::Error,
    },
    /// The CA key is not the key of the CA certificate.
    #[error("{}: key does not belong to the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// `generate` would overwrite this file and `force` was not given.
    #[error("{}: already exists; refusing to overwrite (use --force)", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Only one of the CA certificate and the CA key was given.
    #[error("an existing CA needs both its certificate and its key")]
    CaIncomplete,
    /// Creating a directory or writing a file failed.
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// rcgen refused to generate a key or a certificate.
    #[error("cannot generate {what}: {source}")]
    Generate {
        /// Which item.
        what: &'static str,
        /// rcgen's reason.
        source: rcgen::Error,
    },
    /// A freshly generated certificate does not verify against its CA (a bug or a bad CA).
    #[error("generated {what} does not verify against the CA: {source}")]
    SelfCheck {
        /// Which certificate.
        what: &'static str,
        /// Why verification failed.
        source: rustls::Error,
    },
    /// rustls rejected a certificate, key or setting while building a config.
    #[error("{}: {source}", path.display())]
    Config {
        /// The file whose content was rejected.
        path: PathBuf,
        /// rustls's reason (it never includes key bytes).
        source: rustls::Error,
    },
    /// The client-certificate verifier could not be built from the CA file.
    #[error("{}: cannot verify clients with this CA: {source}", path.display())]
    Verifier {
        /// The CA file.
        path: PathBuf,
        /// rustls's reason.
        source: rustls::server::VerifierBuilderError,
    },
}

/// Where `generate` puts (or found) each file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    /// The CA certificate, the trust anchor on both hosts.
    pub ca_cert: PathBuf,
    /// The CA key; `None` when an existing CA signed and its key stayed where it was.
    pub ca_key: Option<PathBuf>,
    /// The farmer's certificate.
    pub farmer_cert: PathBuf,
    /// The farmer's key.
    pub farmer_key: PathBuf,
    /// The harvester's certificate.
    pub harvester_cert: PathBuf,
    /// The harvester's key.
    pub harvester_key: PathBuf,
}

impl CertPaths {
    /// The standard file names inside `dir`, with `ca_key` set.
    pub fn in_dir(dir: &Path) -> CertPaths {
        CertPaths {
            ca_cert: dir.join("ca.crt"),
            ca_key: Some(dir.join("ca.key")),
            farmer_cert: dir.join("farmer.crt"),
            farmer_key: dir.join("farmer.key"),
            harvester_cert: dir.join("harvester.crt"),
            harvester_key: dir.join("harvester.key"),
        }
    }
}

/// Writes a CA and the farmer and harvester certificates into `dir` (created mode 0700).
///
/// With `existing_ca = Some((cert, key))` that CA signs the leaves, `ca.crt` becomes a copy of
/// its certificate and no `ca.key` is written. Otherwise a fresh ECDSA P-256 CA is made.
/// Unless `force`, refuses (naming the file) if any file it would write already exists.
/// Before returning, each leaf is verified against the CA with webpki.
pub fn generate(
    dir: &Path,
    existing_ca: Option<(&Path, &Path)>,
    force: bool,
) -> Result<CertPaths, TlsError> {
    let mut paths = CertPaths::in_dir(dir);
    let now = time::OffsetDateTime::now_utc();

    // Load and check an existing CA before touching the file system.
    let loaded_ca = match existing_ca {
        Some((cert_path, key_path)) => Some(load_ca(cert_path, key_path)?),
        None => None,
    };
    if loaded_ca.is_some() {
        paths.ca_key = None;
    }

    // Sign everything in memory first, so a failure leaves the directory untouched.
    let farmer_key = new_key("farmer key")?;
    let harvester_key = new_key("harvester key")?;
    let farmer_params = leaf_params(
        FARMER_SERVER_NAME,
        &[FARMER_SERVER_NAME, "localhost"],
        &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
        now,
    )?;
    let harvester_params =
        leaf_params(HARVESTER_SERVER_NAME, &[HARVESTER_SERVER_NAME, "localhost"], &[], now)?;

    let (ca_pem, ca_key_pem, farmer_pem, harvester_pem) = match loaded_ca {
        Some(ca) => {
            let sign = |p: &CertificateParams, k: &KeyPair, what| {
                p.signed_by(k, &ca.issuer).map_err(|source| TlsError::Generate { what, source })
            };
            let farmer = sign(&farmer_params, &farmer_key, "farmer certificate")?;
            let harvester = sign(&harvester_params, &harvester_key, "harvester certificate")?;
            (ca.cert_pem, None, farmer.pem(), harvester.pem())
        }
        None => {
            let ca_key = new_key("CA key")?;
            let ca_key_pem = ca_key.serialize_pem();
            let ca = CertifiedIssuer::self_signed(ca_params(now), ca_key)
                .map_err(|source| TlsError::Generate { what: "CA certificate", source })?;
            let sign = |p: &CertificateParams, k: &KeyPair, what| {
                p.signed_by(k, &ca).map_err(|source| TlsError::Generate { what, source })
            };
            let farmer = sign(&farmer_params, &farmer_key, "farmer certificate")?;
            let harvester = sign(&harvester_params, &harvester_key, "harvester certificate")?;
            (ca.pem(), Some(ca_key_pem), farmer.pem(), harvester.pem())
        }
    };
    self_check(ca_pem.as_bytes(), farmer_pem.as_bytes(), harvester_pem.as_bytes())?;

    let farmer_key_pem = farmer_key.serialize_pem();
    let harvester_key_pem = harvester_key.serialize_pem();
    let mut files: Vec<(&Path, &[u8], u32)> = vec![
        (&paths.ca_cert, ca_pem.as_bytes(), CERT_FILE_MODE),
        (&paths.farmer_cert, farmer_pem.as_bytes(), CERT_FILE_MODE),
        (&paths.farmer_key, farmer_key_pem.as_bytes(), KEY_FILE_MODE),
        (&paths.harvester_cert, harvester_pem.as_bytes(), CERT_FILE_MODE),
        (&paths.harvester_key, harvester_key_pem.as_bytes(), KEY_FILE_MODE),
    ];
    if let (Some(key_path), Some(key_pem)) = (&paths.ca_key, &ca_key_pem) {
        files.push((key_path, key_pem.as_bytes(), KEY_FILE_MODE));
    }

    if !force {
        for (path, contents, _) in &files {
            // Re-issuing into the directory that holds the given CA: an identical ca.crt is
            // not an overwrite.
            let exists = fs::symlink_metadata(path).is_ok();
            if exists && read_capped(path).map(|old| old != *contents).unwrap_or(true) {
                return Err(TlsError::Exists { path: path.to_path_buf() });
            }
        }
    }

    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|source| TlsError::Write { path: dir.to_path_buf(), source })?;
    for (path, contents, mode) in &files {
        write_atomic(path, contents, *mode)?;
    }
    Ok(paths)
}

/// Runs `generate` for the `harvester certs` command and describes the result for a person.
pub fn certs_command(
    dir: &Path,
    ca_cert: Option<&Path>,
    ca_key: Option<&Path>,
    force: bool,
) -> Result<String, TlsError> {
    let existing = match (ca_cert, ca_key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => return Err(TlsError::CaIncomplete),
    };
    let paths = generate(dir, existing, force)?;

    let mut out = String::new();
    if let Some(cert) = ca_cert {
        out.push_str(&format!("Signed with the existing CA {}:\n", cert.display()));
        out.push_str(&format!("  {}  copy of the CA certificate\n", paths.ca_cert.display()));
    } else {
        out.push_str(&format!("Created a private CA in {}:\n", dir.display()));
        out.push_str(&format!("  {}  CA certificate (trust anchor)\n", paths.ca_cert.display()));
        if let Some(key) = &paths.ca_key {
            out.push_str(&format!(
                "  {}  CA key: keep it offline; it is needed only to issue more certificates\n",
                key.display()
            ));
        }
    }
    for (cert, key, what) in [
        (&paths.harvester_cert, &paths.harvester_key, "harvester"),
        (&paths.farmer_cert, &paths.farmer_key, "farmer"),
    ] {
        out.push_str(&format!("  {}  {what} certificate\n", cert.display()));
        out.push_str(&format!("  {}  {what} key (mode 0600)\n", key.display()));
    }
    out.push_str(&format!(
        "\nCopy to the farmer host: {}, {}, {}\n",
        paths.ca_cert.display(),
        paths.farmer_cert.display(),
        paths.farmer_key.display()
    ));
    out.push_str(&format!(
        "Keep on the harvester host: {}, {}, {}\n",
        paths.ca_cert.display(),
        paths.harvester_cert.display(),
        paths.harvester_key.display()
    ));
    Ok(out)
}

/// The harvester's config for dialling the farmer: trusts only the CA in `ca_cert`, presents
/// `cert` + `key`, offers `ALPN`. Connect with server name `FARMER_SERVER_NAME`.
pub fn client_config(
    ca_cert: &Path,
    cert: &Path,
    key: &Path,
) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = root_store(ca_cert)?;
    let chain = load_certs(cert)?;
    let private_key = load_key(key)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Config { path: ca_cert.to_path_buf(), source })?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, private_key)
        .map_err(|source| TlsError::Config { path: key.to_path_buf(), source })?;
    config.alpn_protocols = vec![ALPN_V2.to_vec(), ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// The farmer side's config: presents `cert` + `key`, requires a client certificate that
/// chains to the CA in `ca_cert`, offers `ALPN`.
pub fn server_config(
    ca_cert: &Path,
    cert: &Path,
    key: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_alpn(ca_cert, cert, key, &[ALPN_V2, ALPN])
}

/// [`server_config`] offering only `protocols` (in preference order): a farmer of an older
/// version offers `[ALPN]` alone.
pub fn server_config_alpn(
    ca_cert: &Path,
    cert: &Path,
    key: &Path,
    protocols: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let roots = Arc::new(root_store(ca_cert)?);
    let chain = load_certs(cert)?;
    let private_key = load_key(key)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|source| TlsError::Verifier { path: ca_cert.to_path_buf(), source })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Config { path: ca_cert.to_path_buf(), source })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, private_key)
        .map_err(|source| TlsError::Config { path: key.to_path_buf(), source })?;
    config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The harvester's config for dialling a chia farmer, as chia's own harvester does: TLS 1.3,
/// presents `cert` + `key` (chia's `private_harvester.crt/.key`), and accepts the farmer's
/// certificate if it chains to the private CA in `ca_cert`, whatever names it carries (chia
/// checks no host name: every node of a farm has a certificate of the same CA). No ALPN.
pub fn chia_client_config(
    ca_cert: &Path,
    cert: &Path,
    key: &Path,
) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = Arc::new(root_store(ca_cert)?);
    let chain = load_certs(cert)?;
    let private_key = load_key(key)?;
    let inner = WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|source| TlsError::Verifier { path: ca_cert.to_path_buf(), source })?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Config { path: ca_cert.to_path_buf(), source })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyNameVerifier { inner }))
        .with_client_auth_cert(chain, private_key)
        .map_err(|source| TlsError::Config { path: key.to_path_buf(), source })?;
    Ok(Arc::new(config))
}

/// WebPKI verification of the chain to the CA, without the name check: rustls checks the
/// chain (signatures, validity, key usage) before the name, so a name error means the chain
/// itself was accepted.
#[derive(Debug)]
struct AnyNameVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for AnyNameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                NotValidForName | NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// An existing CA, checked: a CA certificate and the key that belongs to it.
struct LoadedCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn load_ca(cert_path: &Path, key_path: &Path) -> Result<LoadedCa, TlsError> {
    let cert_bytes = read_capped(cert_path)?;
    let der = first_cert(cert_path, &cert_bytes)?;
    let key_bytes = read_capped(key_path)?;
    let key_pem = std::str::from_utf8(&key_bytes)
        .map_err(|_| TlsError::NotPem { path: key_path.to_path_buf(), reason: "not text" })?;
    let key = KeyPair::from_pem(key_pem).map_err(|source| match source {
        rcgen::Error::PemError(_) => {
            TlsError::NotPem { path: key_path.to_path_buf(), reason: "cannot decode PEM" }
        }
        source => TlsError::BadKey { path: key_path.to_path_buf(), source },
    })?;

    {
        let (_, x509) = x509_parser::parse_x509_certificate(&der)
            .map_err(|_| TlsError::BadCertificate { path: cert_path.to_path_buf() })?;
        if !x509.is_ca() {
            return Err(TlsError::NotCa { path: cert_path.to_path_buf() });
        }
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(TlsError::KeyMismatch {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
            });
        }
    }
    let issuer = Issuer::from_ca_cert_der(&der, key)
        .map_err(|_| TlsError::BadCertificate { path: cert_path.to_path_buf() })?;
    // Re-encode rather than copy the input, so ca.crt holds exactly the one CA certificate.
    let cert_pem = pem_encode_cert(&der);
    Ok(LoadedCa { cert_pem, issuer })
}

/// `der` as one PEM `CERTIFICATE` block (RFC 7468: base64 lines of 64 characters, `\n` line
/// ends, as rcgen writes). `CertificateParams` can't round-trip an arbitrary certificate.
fn pem_encode_cert(der: &CertificateDer<'_>) -> String {
    let block = Pem::new("CERTIFICATE", der.as_ref());
    encode_config(&block, EncodeConfig::new().set_line_ending(LineEnding::LF))
}

fn new_key(what: &'static str) -> Result<KeyPair, TlsError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|source| TlsError::Generate { what, source })
}

fn validity(params: &mut CertificateParams, now: time::OffsetDateTime) {
    params.not_before = now - time::Duration::seconds(BACKDATE_SECONDS);
    params.not_after = now + time::Duration::days(VALIDITY_DAYS);
}

fn ca_params(now: time::OffsetDateTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = name;
    // Path length 0: this CA signs leaves only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, now);
    params
}

fn leaf_params(
    common_name: &str,
    dns_names: &[&str],
    ips: &[IpAddr],
    now: time::OffsetDateTime,
) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages =
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    for dns in dns_names {
        let ia5 = (*dns)
            .try_into()
            .map_err(|source| TlsError::Generate { what: "subject alternative name", source })?;
        params.subject_alt_names.push(SanType::DnsName(ia5));
    }
    params.subject_alt_names.extend(ips.iter().copied().map(SanType::IpAddress));
    validity(&mut params, now);
    Ok(params)
}

/// Verifies both leaves against the CA, each as a server and as a client, the way the two
/// sides will.
fn self_check(ca_pem: &[u8], farmer_pem: &[u8], harvester_pem: &[u8]) -> Result<(), TlsError> {
    let parse = |pem: &[u8], what| {
        CertificateDer::from_pem_slice(pem).map_err(|_| TlsError::SelfCheck {
            what,
            source: rustls::Error::General("cannot re-read generated PEM".into()),
        })
    };
    let ca = parse(ca_pem, "CA certificate")?;
    let mut roots = RootCertStore::empty();
    roots.add(ca).map_err(|source| TlsError::SelfCheck { what: "CA certificate", source })?;
    let roots = Arc::new(roots);
    let servers = WebPkiServerVerifier::builder_with_provider(Arc::clone(&roots), provider())
        .build()
        .map_err(|e| TlsError::SelfCheck {
            what: "CA certificate",
            source: rustls::Error::General(e.to_string()),
        })?;
    let clients =
        WebPkiClientVerifier::builder_with_provider(roots, provider()).build().map_err(|e| {
            TlsError::SelfCheck {
                what: "CA certificate",
                source: rustls::Error::General(e.to_string()),
            }
        })?;
    let now = UnixTime::now();
    for (pem, name, what) in [
        (farmer_pem, FARMER_SERVER_NAME, "farmer certificate"),
        (harvester_pem, HARVESTER_SERVER_NAME, "harvester certificate"),
    ] {
        let leaf = parse(pem, what)?;
        let server_name = ServerName::try_from(name).map_err(|e| TlsError::SelfCheck {
            what,
            source: rustls::Error::General(e.to_string()),
        })?;
        servers
            .verify_server_cert(&leaf, &[], &server_name, &[], now)
            .map_err(|source| TlsError::SelfCheck { what, source })?;
        clients
            .verify_client_cert(&leaf, &[], now)
            .map_err(|source| TlsError::SelfCheck { what, source })?;
    }
    Ok(())
}

/// A root store holding the certificates of `path`, each checked to be a CA.
fn root_store(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for der in load_certs(path)? {
        let (_, x509) = x509_parser::parse_x509_certificate(&der)
            .map_err(|_| TlsError::BadCertificate { path: path.to_path_buf() })?;
        if !x509.is_ca() {
            return Err(TlsError::NotCa { path: path.to_path_buf() });
        }
        roots.add(der).map_err(|source| TlsError::Config { path: path.to_path_buf(), source })?;
    }
    Ok(roots)
}

/// All certificates in a PEM file (at least one, at most `CHAIN_CERTS_MAX`).
fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_capped(path)?;
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(&bytes) {
        let der = item.map_err(|e| pem_error(path, &e))?;
        if certs.len() == CHAIN_CERTS_MAX {
            return Err(TlsError::TooManyCertificates {
                path: path.to_path_buf(),
                limit: CHAIN_CERTS_MAX,
            });
        }
        certs.push(der);
    }
    if certs.is_empty() {
        return Err(no_section(path, &bytes, TlsError::NoCertificate { path: path.to_path_buf() }));
    }
    Ok(certs)
}

fn first_cert(path: &Path, bytes: &[u8]) -> Result<CertificateDer<'static>, TlsError> {
    match CertificateDer::from_pem_slice(bytes) {
        Ok(der) => Ok(der),
        Err(pem::Error::NoItemsFound) => {
            Err(no_section(path, bytes, TlsError::NoCertificate { path: path.to_path_buf() }))
        }
        Err(e) => Err(pem_error(path, &e)),
    }
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_capped(path)?;
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => {
            Err(no_section(path, &bytes, TlsError::NoKey { path: path.to_path_buf() }))
        }
        Err(e) => Err(pem_error(path, &e)),
    }
}

/// `NotPem` if the file has no PEM section at all, else `otherwise`.
fn no_section(path: &Path, bytes: &[u8], otherwise: TlsError) -> TlsError {
    let has_begin = bytes.windows(11).any(|w| w == b"-----BEGIN ");
    if has_begin {
        otherwise
    } else {
        TlsError::NotPem { path: path.to_path_buf(), reason: "no PEM section" }
    }
}

/// Describes a PEM error without its payload: some variants quote lines of the file, and for a
/// key file those lines are key material.
fn pem_error(path: &Path, error: &pem::Error) -> TlsError {
    let reason = match error {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line",
        pem::Error::IllegalSectionStart { .. } => "malformed BEGIN line",
        pem::Error::Base64Decode(_) => "invalid base64",
        pem::Error::NoItemsFound => "no PEM section",
        pem::Error::SectionTooLarge => "section too large",
        _ => "unreadable PEM",
    };
    TlsError::NotPem { path: path.to_path_buf(), reason }
}

/// Reads a whole file of at most `PEM_FILE_BYTES_MAX` bytes.
fn read_capped(path: &Path) -> Result<Vec<u8>, TlsError> {
    let file = File::open(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => TlsError::Missing { path: path.to_path_buf() },
        _ => TlsError::Read { path: path.to_path_buf(), source },
    })?;
    let mut bytes = Vec::new();
    file.take(PEM_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| TlsError::Read { path: path.to_path_buf(), source })?;
    if bytes.len() as u64 > PEM_FILE_BYTES_MAX {
        return Err(TlsError::TooLarge {
            path: path.to_path_buf(),
            limit_bytes: PEM_FILE_BYTES_MAX,
        });
    }
    Ok(bytes)
}

/// Writes `contents` to `path` with `mode` via a temp file in the same directory, fsync and
/// rename, then fsyncs the directory.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let err = |source| TlsError::Write { path: path.to_path_buf(), source };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    // A leftover temp file from a crash may have looser permissions; never reuse it.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use super::*;

    const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

    /// A fresh directory under the system temp dir, removed on drop.
    struct TestDir(PathBuf);

    impl TestDir {
        fn new(name: &str) -> TestDir {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir()
                .join(format!("harvester-tls-{name}-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            TestDir(path)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn server_for(p: &CertPaths) -> Arc<ServerConfig> {
        server_config(&p.ca_cert, &p.farmer_cert, &p.farmer_key).expect("server config")
    }

    fn client_for(p: &CertPaths) -> Arc<ClientConfig> {
        client_config(&p.ca_cert, &p.harvester_cert, &p.harvester_key).expect("client config")
    }

    /// One connection: the server reads 4 bytes and answers "pong". Returns what each side
    /// saw: the server's result and the client's reply.
    async fn exchange(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
    ) -> (Result<(), String>, Result<Vec<u8>, String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server_task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
            let mut tls = TlsAcceptor::from(server).accept(tcp).await.map_err(|e| e.to_string())?;
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(ALPN_V2));
            let mut ping = [0u8; 4];
            tls.read_exact(&mut ping).await.map_err(|e| e.to_string())?;
            assert_eq!(&ping, b"ping");
            tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
            tls.shutdown().await.map_err(|e| e.to_string())
        });
        let client_result = async {
            let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            let name = ServerName::try_from(FARMER_SERVER_NAME).map_err(|e| e.to_string())?;
            let mut tls =
                TlsConnector::from(client).connect(name, tcp).await.map_err(|e| e.to_string())?;
            tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
            let mut reply = Vec::new();
            tls.read_to_end(&mut reply).await.map_err(|e| e.to_string())?;
            Ok(reply)
        };
        let client_result =
            tokio::time::timeout(HANDSHAKE_TIMEOUT, client_result).await.expect("client timed out");
        let server_result = tokio::time::timeout(HANDSHAKE_TIMEOUT, server_task)
            .await
            .expect("server timed out")
            .expect("server task panicked");
        (server_result, client_result)
    }

    #[tokio::test]
    async fn mutual_tls_exchanges_bytes() {
        let dir = TestDir::new("ok");
        let paths = generate(dir.path(), None, false).expect("generate");
        let (server, client) = exchange(server_for(&paths), client_for(&paths)).await;
        assert_eq!(server, Ok(()));
        assert_eq!(client, Ok(b"pong".to_vec()));
    }

    #[tokio::test]
    async fn client_from_other_ca_is_refused() {
        let ours = TestDir::new("ours");
        let theirs = TestDir::new("theirs");
        let ours = generate(ours.path(), None, false).expect("generate ours");
        let theirs_paths = generate(theirs.path(), None, false).expect("generate theirs");
        // The intruder trusts our CA (so it accepts the farmer) but holds a foreign cert.
        let intruder =
            client_config(&ours.ca_cert, &theirs_paths.harvester_cert, &theirs_paths.harvester_key)
                .expect("client config");
        let (server, client) = exchange(server_for(&ours), intruder).await;
        let err = server.expect_err("server must refuse");
        // Both CAs share one subject name, so webpki finds "the" issuer and the signature fails.
        assert!(err.contains("invalid peer certificate"), "{err}");
        assert!(client.is_err());
    }

    #[tokio::test]
    async fn client_without_certificate_is_refused() {
        let dir = TestDir::new("nocert");
        let paths = generate(dir.path(), None, false).expect("generate");
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(root_store(&paths.ca_cert).expect("roots"))
            .with_no_client_auth();
        config.alpn_protocols = vec![ALPN.to_vec()];
        let (server, client) = exchange(server_for(&paths), Arc::new(config)).await;
        let err = server.expect_err("server must refuse");
        assert!(err.contains("NoCertificatesPresented") || err.contains("certificate"), "{err}");
        assert!(client.is_err());
    }

    #[tokio::test]
    async fn server_from_other_ca_is_refused_by_client() {
        let ours = TestDir::new("ours-srv");
        let theirs = TestDir::new("theirs-srv");
        let ours = generate(ours.path(), None, false).expect("generate ours");
        let theirs = generate(theirs.path(), None, false).expect("generate theirs");
        // The impostor accepts our harvester but presents a foreign farmer certificate.
        let impostor = server_config(&ours.ca_cert, &theirs.farmer_cert, &theirs.farmer_key)
            .expect("server config");
        let (server, client) = exchange(impostor, client_for(&ours)).await;
        let err = client.expect_err("client must refuse");
        // Both CAs share one subject name, so webpki finds "the" issuer and the signature fails.
        assert!(err.contains("invalid peer certificate"), "{err}");
        assert!(server.is_err());
    }

    #[tokio::test]
    async fn existing_ca_signs_leaves() {
        let ca_dir = TestDir::new("ca");
        let leaf_dir = TestDir::new("leaf");
        let ca = generate(ca_dir.path(), None, false).expect("generate CA");
        let ca_key = ca.ca_key.clone().expect("fresh CA has a key");
        let leaves = generate(leaf_dir.path(), Some((&ca.ca_cert, &ca_key)), false)
            .expect("generate with existing CA");
        assert_eq!(leaves.ca_key, None);
        assert!(!leaf_dir.path().join("ca.key").exists());
        assert_eq!(
            load_certs(&leaves.ca_cert).expect("copied CA"),
            load_certs(&ca.ca_cert).expect("original CA")
        );
        // A farmer from the first run and a harvester from the second trust each other.
        let server = server_config(&ca.ca_cert, &ca.farmer_cert, &ca.farmer_key).expect("server");
        let (server, client) = exchange(server, client_for(&leaves)).await;
        assert_eq!(server, Ok(()));
        assert_eq!(client, Ok(b"pong".to_vec()));
    }

    #[test]
    fn existing_ca_in_target_dir_reissues_leaves() {
        let dir = TestDir::new("reissue");
        let first = generate(dir.path(), None, false).expect("generate");
        let ca_key = first.ca_key.clone().expect("key");
        let old_farmer = fs::read(&first.farmer_cert).expect("read");
        // The leaves exist, so without force it refuses; ca.crt alone is identical, not a clash.
        let err = generate(dir.path(), Some((&first.ca_cert, &ca_key)), false).unwrap_err();
        assert!(matches!(err, TlsError::Exists { ref path } if path.ends_with("farmer.crt")));
        generate(dir.path(), Some((&first.ca_cert, &ca_key)), true).expect("force");
        assert_ne!(fs::read(&first.farmer_cert).expect("read"), old_farmer);
        assert!(ca_key.exists(), "the CA key is left alone");
    }

    #[test]
    fn existing_ca_must_be_a_ca_with_its_key() {
        let dir = TestDir::new("notca");
        let out = TestDir::new("notca-out");
        let p = generate(dir.path(), None, false).expect("generate");
        let err = generate(out.path(), Some((&p.farmer_cert, &p.farmer_key)), false).unwrap_err();
        assert!(matches!(err, TlsError::NotCa { .. }), "{err}");
        assert!(err.to_string().contains("farmer.crt"), "{err}");
        let err = generate(out.path(), Some((&p.ca_cert, &p.farmer_key)), false).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        assert!(!out.path().exists(), "nothing written on error");
    }

    #[test]
    fn refuses_to_overwrite() {
        let dir = TestDir::new("overwrite");
        let p = generate(dir.path(), None, false).expect("generate");
        let err = generate(dir.path(), None, false).unwrap_err();
        assert!(matches!(err, TlsError::Exists { .. }), "{err}");
        assert!(err.to_string().contains("ca.crt"), "{err}");
        // One leftover file is enough to refuse, and the error names it.
        for f in [&p.ca_cert, &p.farmer_cert, &p.farmer_key, &p.harvester_cert] {
            fs::remove_file(f).expect("remove");
        }
        let err = generate(dir.path(), None, false).unwrap_err();
        assert!(err.to_string().contains("harvester.key"), "{err}");
        let before = fs::read(&p.harvester_key).expect("read");
        generate(dir.path(), None, true).expect("force overwrites");
        assert_ne!(fs::read(&p.harvester_key).expect("read"), before);
    }

    #[test]
    fn file_modes() {
        let dir = TestDir::new("modes");
        let p = generate(&dir.path().join("nested"), None, false).expect("generate");
        let mode = |path: &Path| fs::metadata(path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("nested")), 0o700);
        for key in [p.ca_key.as_deref().expect("key"), &p.farmer_key, &p.harvester_key] {
            assert_eq!(mode(key), 0o600, "{}", key.display());
        }
        assert_eq!(mode(&p.ca_cert), 0o644);
        let leftovers = fs::read_dir(dir.path().join("nested"))
            .expect("list")
            .filter(|e| e.as_ref().expect("entry").file_name().to_string_lossy().contains(".tmp"))
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn load_errors_name_the_file_and_the_problem() {
        let dir = TestDir::new("errors");
        let p = generate(dir.path(), None, false).expect("generate");
        let missing = dir.path().join("nope.crt");
        let err = client_config(&missing, &p.harvester_cert, &p.harvester_key).unwrap_err();
        assert!(matches!(err, TlsError::Missing { .. }));
        assert_eq!(err.to_string(), format!("{}: missing", missing.display()));

        let garbage = dir.path().join("garbage.crt");
        fs::write(&garbage, b"hello").expect("write");
        let err = client_config(&garbage, &p.harvester_cert, &p.harvester_key).unwrap_err();
        assert!(matches!(err, TlsError::NotPem { .. }), "{err}");

        // A certificate where the key should be.
        let err = client_config(&p.ca_cert, &p.harvester_cert, &p.harvester_cert).unwrap_err();
        assert!(matches!(err, TlsError::NoKey { ref path } if *path == p.harvester_cert));

        // A key where the certificate should be.
        let err = client_config(&p.ca_cert, &p.harvester_key, &p.harvester_key).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");

        // A leaf where the CA should be.
        let err = server_config(&p.farmer_cert, &p.farmer_cert, &p.farmer_key).unwrap_err();
        assert!(matches!(err, TlsError::NotCa { .. }), "{err}");

        // Broken base64 inside a key: the message must not quote the file.
        let broken = dir.path().join("broken.key");
        fs::write(&broken, "-----BEGIN PRIVATE KEY-----\nSECRET!!\n-----END PRIVATE KEY-----\n")
            .expect("write");
        let err = client_config(&p.ca_cert, &p.harvester_cert, &broken).unwrap_err();
        assert!(matches!(err, TlsError::NotPem { .. }), "{err}");
        assert!(!format!("{err} {err:?}").contains("SECRET"), "{err:?}");

        let huge = dir.path().join("huge.crt");
        fs::write(&huge, vec![b'a'; PEM_FILE_BYTES_MAX as usize + 1]).expect("write");
        let err = client_config(&huge, &p.harvester_cert, &p.harvester_key).unwrap_err();
        assert!(matches!(err, TlsError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn certs_command_summary() {
        let dir = TestDir::new("cmd");
        let text = certs_command(dir.path(), None, None, false).expect("certs");
        assert!(text.contains("Copy to the farmer host"), "{text}");
        assert!(text.contains("farmer.key"), "{text}");
        let err = certs_command(dir.path(), Some(Path::new("x")), None, false).unwrap_err();
        assert!(matches!(err, TlsError::CaIncomplete));
    }

    #[test]
    fn pem_encoding_round_trips() {
        for len in [1usize, 2, 3, 4, 47, 48, 49, 100] {
            let der: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            let pem = pem_encode_cert(&CertificateDer::from(der.clone()));
            let back = CertificateDer::from_pem_slice(pem.as_bytes()).expect("parse");
            assert_eq!(back.as_ref(), der.as_slice(), "len {len}");
        }
        // The same text as rcgen writes for its own certificates.
        let key = new_key("test").expect("key");
        let params = CertificateParams::new(vec!["test".to_string()]).expect("params");
        let cert = params.self_signed(&key).expect("certificate");
        assert_eq!(pem_encode_cert(cert.der()), cert.pem());
    }
}
