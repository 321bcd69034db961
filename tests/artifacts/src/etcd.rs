//! Test code only: a real etcd server (Debian's `etcd-server`) on loopback, for the witness's
//! tests, started in a folder of the test's and killed when dropped; and the command line the
//! live rig gives its own etcd.
//!
//! Tests that need it call [`EtcdServer::start`], which returns `None` (and the test says it
//! skipped) where no `etcd` is installed; CI installs it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs etcd.
pub const ETCD: &str = "/usr/bin/etcd";

/// How long etcd may take to answer after it starts.
const READY: Duration = Duration::from_secs(30);

/// The files of a TLS setup made for a test: a CA, etcd's server certificate (for
/// 127.0.0.1) and a client certificate, all signed by that CA (PEM).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TlsFiles {
    /// Make them in `dir` with the `openssl` command.
    pub fn make(dir: &Path) -> TlsFiles {
        let path = |name: &str| dir.join(name);
        let openssl = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("openssl runs");
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let subject = |cn: &str| format!("/CN={cn}");
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            &subject("haven test CA"),
        ]);
        std::fs::write(
            path("server.ext"),
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        .expect("server.ext");
        std::fs::write(path("client.ext"), "extendedKeyUsage=clientAuth\n").expect("client.ext");
        for (who, cn) in [("server", "127.0.0.1"), ("client", "haven")] {
            let key = format!("{who}.key");
            let csr = format!("{who}.csr");
            let pem = format!("{who}.pem");
            let ext = format!("{who}.ext");
            openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &subject(cn),
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &pem,
                "-extfile",
                &ext,
            ]);
        }
        TlsFiles {
            ca: path("ca.pem"),
            server_cert: path("server.pem"),
            server_key: path("server.key"),
            client_cert: path("client.pem"),
            client_key: path("client.key"),
        }
    }
}

/// etcd's arguments for a one-member cluster named `name` with its data in `data_dir`,
/// serving clients on `client` and its (unused) peer port on `peer`, both `host:port`; with
/// `tls`, clients must speak TLS and show a certificate the CA signed.
pub fn arguments(
    name: &str,
    data_dir: &Path,
    client: &str,
    peer: &str,
    tls: Option<&TlsFiles>,
) -> Vec<String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let client_url = format!("{scheme}://{client}");
    let peer_url = format!("http://{peer}");
    let mut arguments = vec![
        format!("--name={name}"),
        format!("--data-dir={}", data_dir.display()),
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster={name}={peer_url}"),
        "--initial-cluster-state=new".to_owned(),
        // Small and quick: a test cluster of one.
        "--heartbeat-interval=50".to_owned(),
        "--election-timeout=500".to_owned(),
        "--quota-backend-bytes=67108864".to_owned(),
        "--log-level=warn".to_owned(),
    ];
    if let Some(tls) = tls {
        arguments.extend([
            format!("--cert-file={}", tls.server_cert.display()),
            format!("--key-file={}", tls.server_key.display()),
            format!("--trusted-ca-file={}", tls.ca.display()),
            "--client-cert-auth=true".to_owned(),
        ]);
    }
    arguments
}

/// A one-member etcd on loopback.
#[derive(Debug)]
pub struct EtcdServer {
    child: Child,
    /// `http://127.0.0.1:<port>` (`https://` with TLS)
    pub endpoint: String,
    client: std::net::SocketAddr,
    /// With [`EtcdServer::start_tls`]: the CA and the certificates.
    pub tls: Option<TlsFiles>,
    _dir: tempfile::TempDir,
}

impl EtcdServer {
    /// Start one and wait until it accepts connections; `None` where etcd is not installed.
    pub fn start() -> Option<EtcdServer> {
        EtcdServer::launch(false)
    }

    /// [`EtcdServer::start`], speaking only TLS and asking clients for a certificate.
    pub fn start_tls() -> Option<EtcdServer> {
        EtcdServer::launch(true)
    }

    fn launch(with_tls: bool) -> Option<EtcdServer> {
        if !Path::new(ETCD).exists() {
            eprintln!("skipped: {ETCD} is not installed (Debian's etcd-server)");
            return None;
        }
        let dir = tempfile::tempdir().expect("a folder for etcd");
        let tls = with_tls.then(|| TlsFiles::make(dir.path()));
        let client = crate::support::free_port();
        let peer = crate::support::free_port();
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("etcd's log");
        let child = Command::new(ETCD)
            .args(arguments(
                "witness",
                &dir.path().join("data"),
                &client.to_string(),
                &peer.to_string(),
                tls.as_ref(),
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        let server = EtcdServer {
            child,
            endpoint: format!("{}://{client}", if with_tls { "https" } else { "http" }),
            client,
            tls,
            _dir: dir,
        };
        server.wait_ready();
        Some(server)
    }

    /// Its log file.
    pub fn log(&self) -> PathBuf {
        self._dir.path().join("etcd.log")
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        // etcd answers `/health` with {"health":"true"} once it has a leader.
        while !self.healthy() {
            assert!(
                started.elapsed() < READY,
                "etcd did not become healthy; its log: {}",
                std::fs::read_to_string(self.log()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn healthy(&self) -> bool {
        use std::io::{Read, Write};
        if let Some(tls) = &self.tls {
            // Through etcdctl, which speaks TLS with the client certificate.
            return Command::new("etcdctl")
                .args(["--endpoints", &self.endpoint, "endpoint", "health"])
                .arg(format!("--cacert={}", tls.ca.display()))
                .arg(format!("--cert={}", tls.client_cert.display()))
                .arg(format!("--key={}", tls.client_key.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
        }
        let Ok(mut stream) =
            std::net::TcpStream::connect_timeout(&self.client, Duration::from_millis(200))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let request = format!("GET /health HTTP/1.0\r\nHost: {}\r\n\r\n", self.client);
        let mut answer = String::new();
        stream.write_all(request.as_bytes()).is_ok()
            && stream.read_to_string(&mut answer).is_ok()
            && answer.contains("\"health\":\"true\"")
    }

    /// Freeze it (SIGSTOP): connections stay open and nothing answers, as when a network
    /// drops packets.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Thaw it (SIGCONT).
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("a pid"));
        nix::sys::signal::kill(pid, signal).expect("etcd takes the signal");
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
