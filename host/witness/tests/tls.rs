//! TLS to etcd (cargo feature `tls`): a real etcd on loopback that speaks only TLS and asks
//! for a client certificate. With `[witness.tls]` naming the CA and this host's certificate,
//! the session takes the key; with a CA that did not sign etcd's certificate, it is refused
//! and says why.
#![cfg(feature = "tls")]

use haven_core::{Config, WitnessConfig};
use haven_test_artifacts::etcd::EtcdServer;
use haven_witness::{AcquireError, WitnessHandle};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn config(endpoint: &str, ca: &Path, cert: &Path, key: &Path) -> WitnessConfig {
    let text = format!(
        "[witness]\nendpoints = [\"{endpoint}\"]\nprefix = \"/test\"\npair = \"db1\"\nttl-s = 2\n\
         renew-ms = 400\ntimeout-ms = 600\n[witness.tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        ca.display(),
        cert.display(),
        key.display()
    );
    Config::parse(&text, Path::new("haven.toml"))
        .expect("a valid config")
        .witness
        .expect("a witness")
}

#[test]
fn the_session_speaks_tls_with_its_certificate_and_refuses_a_server_its_ca_did_not_sign() {
    let Some(etcd) = EtcdServer::start_tls() else {
        return;
    };
    let tls = etcd.tls.clone().expect("TLS files");
    let good = config(&etcd.endpoint, &tls.ca, &tls.client_cert, &tls.client_key);
    let session = WitnessHandle::start(&good, "hasta", Arc::new(|_, _| {})).unwrap();
    let token = session
        .acquire(Duration::from_secs(3))
        .expect("the key over TLS");
    assert!(token > 0);

    // Another CA: etcd's certificate is not trusted, and nothing is taken.
    let other = tempfile::tempdir().unwrap();
    let strange = haven_test_artifacts::etcd::TlsFiles::make(other.path());
    let bad = config(
        &etcd.endpoint,
        &strange.ca,
        &strange.client_cert,
        &strange.client_key,
    );
    let session = WitnessHandle::start(&bad, "hastb", Arc::new(|_, _| {})).unwrap();
    match session.acquire(Duration::from_millis(800)) {
        Err(AcquireError::Unreachable(why)) => {
            assert!(why.contains("invalid peer certificate"), "{why}")
        }
        other => panic!("an untrusted server must not be used: {other:?}"),
    }
}
