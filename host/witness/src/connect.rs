//! A client for the configured etcd: its endpoints, credentials and TLS, every request bounded.

use etcd_client::{Client, ConnectOptions};
use haven_core::WitnessConfig;
use std::path::Path;
use std::time::Duration;

/// The largest password or certificate file read.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Why no client could be made or no answer came.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("cannot read {path}: {error}")]
    Read {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error("{path} is larger than {MAX_SECRET_FILE_BYTES} bytes")]
    TooLarge { path: std::path::PathBuf },
    #[error(
        "[witness.tls] is set, but this havend was built without TLS for the witness (cargo \
         feature `tls` of haven-witness)"
    )]
    NoTls,
    #[error("etcd: {0}")]
    Etcd(String),
    #[error("etcd did not answer within {0} ms")]
    Timeout(u64),
}

impl From<etcd_client::Error> for WitnessError {
    fn from(error: etcd_client::Error) -> Self {
        WitnessError::Etcd(describe(&error))
    }
}

/// An etcd error in one line: gRPC statuses as their code and message.
pub fn describe(error: &etcd_client::Error) -> String {
    match error {
        etcd_client::Error::GRpcStatus(status) => {
            format!("{:?}: {}", status.code(), status.message())
        }
        other => other.to_string(),
    }
}

/// What connecting needs, read once (files included), so a reconnect reads nothing.
#[derive(Debug, Clone)]
pub struct Connector {
    endpoints: Vec<String>,
    options: ConnectOptions,
    timeout: Duration,
}

impl Connector {
    /// Read the password and TLS files the config names.
    pub fn new(config: &WitnessConfig) -> Result<Connector, WitnessError> {
        let timeout = Duration::from_millis(u64::from(config.timeout_ms));
        let mut options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(timeout, timeout);
        if let (Some(user), Some(file)) = (&config.user, &config.password_file) {
            let password = read_secret(file)?;
            let password = String::from_utf8_lossy(&password)
                .trim_end_matches(['\n', '\r'])
                .to_owned();
            options = options.with_user(user.clone(), password);
        }
        if let Some(tls) = &config.tls {
            options = with_tls(options, tls)?;
        }
        Ok(Connector {
            endpoints: config.endpoints.clone(),
            options,
            timeout,
        })
    }

    /// The bound on each request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A client; with credentials this already asks etcd for a token, so it is bounded.
    pub async fn connect(&self) -> Result<Client, WitnessError> {
        bounded(
            self.timeout,
            Client::connect(self.endpoints.clone(), Some(self.options.clone())),
        )
        .await
    }
}

/// `future`, or [`WitnessError::Timeout`] after `timeout`.
pub async fn bounded<T, E: Into<WitnessError>>(
    timeout: Duration,
    future: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, WitnessError> {
    match tokio::time::timeout(timeout, future).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(WitnessError::Timeout(
            u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        )),
    }
}

fn read_secret(path: &Path) -> Result<Vec<u8>, WitnessError> {
    use std::io::Read as _;
    let read = |error| WitnessError::Read {
        path: path.to_owned(),
        error,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(WitnessError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

#[cfg(feature = "tls")]
fn with_tls(
    options: ConnectOptions,
    tls: &haven_core::WitnessTls,
) -> Result<ConnectOptions, WitnessError> {
    use etcd_client::{Certificate, Identity, TlsOptions};
    let mut config = TlsOptions::new().ca_certificate(Certificate::from_pem(read_secret(&tls.ca)?));
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        config = config.identity(Identity::from_pem(read_secret(cert)?, read_secret(key)?));
    }
    Ok(options.with_tls(config))
}

#[cfg(not(feature = "tls"))]
fn with_tls(
    _options: ConnectOptions,
    _tls: &haven_core::WitnessTls,
) -> Result<ConnectOptions, WitnessError> {
    Err(WitnessError::NoTls)
}
