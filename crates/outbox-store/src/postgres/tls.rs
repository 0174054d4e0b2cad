//! TLS to PostgreSQL, with libpq's meanings of `sslmode` and `sslrootcert`.
//!
//! | `sslmode` | TLS | server certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | if the server offers it | not checked (checked against `sslrootcert` when given) |
//! | `require` | always | not checked (checked against `sslrootcert` when given) |
//! | `verify-ca` | always | signed by a trusted CA |
//! | `verify-full` | always | signed by a trusted CA and issued for the host connected to |
//!
//! Trusted CAs: the PEM file `sslrootcert` names, else the Mozilla root set (public CAs).
//! The driver knows only `disable`/`prefer`/`require`, so these parameters are taken out of
//! the URL here and the certificate checks are done by the rustls verifier built below.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// What `sslmode` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn parse(value: &str) -> Result<Mode, String> {
        Ok(match value {
            "disable" => Mode::Disable,
            "allow" | "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            other => {
                return Err(format!(
                "sslmode '{other}' is not one of disable, prefer, require, verify-ca, verify-full"
            ))
            }
        })
    }

    /// The driver's mode: it negotiates TLS, the verifier does the checking.
    pub(crate) fn driver(self) -> SslMode {
        match self {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }
}

/// The TLS parameters of a connection URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsParams {
    pub mode: Mode,
    pub root_cert: Option<PathBuf>,
}

impl TlsParams {
    /// How the server's certificate is checked, for `doctor`.
    pub fn describe(&self) -> &'static str {
        match (self.mode, &self.root_cert) {
            (Mode::Disable, _) => "TLS disabled (sslmode=disable)",
            (Mode::VerifyFull, _) => "server certificate and host name verified",
            (Mode::VerifyCa, _) | (_, Some(_)) => {
                "server certificate verified, host name not checked"
            }
            (_, None) => "server certificate not verified; use sslmode=verify-full to check it",
        }
    }
}

/// Splits the TLS parameters off a connection string (URL or `key=value` form), returning
/// the string the driver can parse and the parameters.
pub fn split(url: &str) -> Result<(String, TlsParams), String> {
    let mut params = TlsParams {
        mode: Mode::Prefer,
        root_cert: None,
    };
    let mut take = |key: &str, value: &str| -> Result<bool, String> {
        match key {
            "sslmode" => params.mode = Mode::parse(value)?,
            "sslrootcert" => {
                if value == "system" {
                    return Err("sslrootcert=system is not supported; give the path of the CA's PEM file (without sslrootcert, public CAs are trusted)".into());
                }
                params.root_cert = Some(PathBuf::from(value));
            }
            "sslcert" | "sslkey" | "sslpassword" => {
                return Err(format!(
                "{key}: client certificates are not in this version; authenticate with a password"
            ))
            }
            "sslcrl"
            | "sslcrldir"
            | "sslsni"
            | "ssl_min_protocol_version"
            | "ssl_max_protocol_version"
            | "sslcompression" => return Err(format!("{key} is not supported")),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_string(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if !take(k, &outbox_core::conf::percent_decode(v))? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for (k, v) in key_values(url)? {
            if !take(&k, &v)? {
                kept.push(format!(
                    "{k}='{}'",
                    v.replace('\\', "\\\\").replace('\'', "\\'")
                ));
            }
        }
        kept.join(" ")
    };
    if params.mode == Mode::Disable {
        params.root_cert = None;
    }
    Ok((rest, params))
}

/// The `key = value` pairs of a libpq connection string: keys are words, `=` may have
/// spaces around it, values are a word or 'single-quoted' (with `\'` and `\\` escapes).
fn key_values(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    let skip_spaces = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
    };
    loop {
        skip_spaces(&mut chars);
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        skip_spaces(&mut chars);
        if chars.next() != Some('=') {
            return Err(format!(
                "missing \"=\" after \"{key}\" in the connection string"
            ));
        }
        skip_spaces(&mut chars);
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => {
                        return Err(
                            "a quoted value of the connection string is not closed".to_string()
                        )
                    }
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// The rustls connector for `params`.
pub fn connector(params: &TlsParams) -> Result<MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let roots = || -> Result<Arc<RootCertStore>, String> {
        let mut store = RootCertStore::empty();
        match &params.root_cert {
            Some(path) => {
                let shown = path.display();
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("sslrootcert '{shown}': {e}"))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("sslrootcert '{shown}': {e}"))?;
                let (added, _) = store.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(format!("sslrootcert '{shown}' holds no usable certificate"));
                }
            }
            None => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        Ok(Arc::new(store))
    };
    let check = match (params.mode, &params.root_cert) {
        (Mode::Disable, _) | (Mode::Prefer | Mode::Require, None) => Check::Nothing,
        (Mode::VerifyFull, _) => Check::Full(webpki(roots()?, &provider)?),
        (Mode::VerifyCa, _) | (Mode::Prefer | Mode::Require, Some(_)) => {
            Check::Chain(webpki(roots()?, &provider)?)
        }
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Verifier { check, provider }))
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn webpki(
    roots: Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, String> {
    WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| format!("TLS: {e}"))
}

/// What is checked of the server's certificate.
#[derive(Debug)]
enum Check {
    /// `prefer`/`require` without `sslrootcert` (libpq's meaning): nothing.
    Nothing,
    /// `verify-ca`: the chain must lead to a trusted CA; the name in it is not checked.
    Chain(Arc<WebPkiServerVerifier>),
    /// `verify-full`: the chain and the host name.
    Full(Arc<WebPkiServerVerifier>),
}

/// The certificate check of `sslmode`. The handshake signatures are always verified, so the
/// session key belongs to whoever presented the certificate.
#[derive(Debug)]
struct Verifier {
    check: Check,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match &self.check {
            Check::Nothing => Ok(ServerCertVerified::assertion()),
            Check::Full(webpki) => {
                webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            }
            Check::Chain(webpki) => {
                match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
                    Err(Error::InvalidCertificate(
                        CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. },
                    )) => Ok(ServerCertVerified::assertion()),
                    other => other,
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parameters_are_taken_out_and_the_rest_kept() {
        let (rest, p) = split(
            "postgres://u:p@db:5432/app?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@db:5432/app?application_name=x");
        assert_eq!(p.mode, Mode::VerifyFull);
        assert_eq!(p.root_cert, Some(PathBuf::from("/etc/ca.pem")));

        let (rest, p) = split("postgres://db/app").unwrap();
        assert_eq!((rest.as_str(), p.mode), ("postgres://db/app", Mode::Prefer));
        let (rest, p) = split("postgresql://db/app?sslmode=require").unwrap();
        assert_eq!(
            (rest.as_str(), p.mode),
            ("postgresql://db/app", Mode::Require)
        );
    }

    #[test]
    fn key_value_strings_work_too() {
        let (rest, p) =
            split("host=db user=app sslmode = verify-ca sslrootcert='/etc/my ca.pem' dbname=x")
                .unwrap();
        assert_eq!(rest, "host='db' user='app' dbname='x'");
        assert_eq!(p.mode, Mode::VerifyCa);
        assert_eq!(p.root_cert, Some(PathBuf::from("/etc/my ca.pem")));
    }

    #[test]
    fn values_ending_in_equals_signs_and_quotes_survive() {
        let (rest, p) = split(
            r"host=db password=c2VjcmV0== dbname=app options='-c a=b' application_name=it\'s",
        )
        .unwrap();
        assert_eq!(
            rest,
            r"host='db' password='c2VjcmV0==' dbname='app' options='-c a=b' application_name='it\'s'"
        );
        assert_eq!(p.mode, Mode::Prefer);
        let config: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(config.get_password(), Some(&b"c2VjcmV0=="[..]));
        assert_eq!(config.get_dbname(), Some("app"));
        assert_eq!(config.get_application_name(), Some("it's"));
        assert!(split("host=db password").is_err());
        assert!(split("host='db").is_err());
    }

    #[test]
    fn what_is_not_supported_is_named() {
        let e = split("postgres://db/x?sslmode=maybe").unwrap_err();
        assert!(e.contains("sslmode 'maybe'"), "{e}");
        let e = split("postgres://db/x?sslcert=/c.pem").unwrap_err();
        assert!(e.contains("client certificates"), "{e}");
        let e = split("host=db sslrootcert=system").unwrap_err();
        assert!(e.contains("sslrootcert=system"), "{e}");
    }

    #[test]
    fn a_missing_root_file_is_an_error_naming_it() {
        let (_, p) =
            split("postgres://db/x?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem").unwrap();
        let e = match connector(&p) {
            Err(e) => e,
            Ok(_) => panic!("connector built without its root file"),
        };
        assert!(e.contains("sslrootcert '/nonexistent/ca.pem'"), "{e}");
        // Without a file: the public roots, no error.
        let (_, p) = split("postgres://db/x?sslmode=verify-full").unwrap();
        assert!(connector(&p).is_ok());
    }
}
