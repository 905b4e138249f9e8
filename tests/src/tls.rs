//! A real `redis-server` that speaks TLS only (`--port 0 --tls-port P`), with a private CA,
//! a server certificate for 127.0.0.1 and a client certificate, all made by the `openssl`
//! command-line tool in a directory of their own (removed on drop). The server asks clients
//! for a certificate (`tls-auth-clients yes`, Redis' default).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use redis::{ClientTlsConfig, TlsCertificates};

/// A TLS-only `redis-server` child process owned by a test.
pub struct TlsRedis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// Certificates made for one test, in `dir`.
pub struct Certificates {
    dir: PathBuf,
}

impl Certificates {
    /// Makes a CA, a server certificate for `127.0.0.1` / `localhost` and a client
    /// certificate, both signed by the CA, in a new directory.
    ///
    /// # Panics
    ///
    /// When `openssl` is missing or fails.
    pub fn make() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cache-runtime-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("a directory for the certificates");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &dir,
            &[
                &[
                    "req",
                    "-x509",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=cache-runtime test CA",
                ][..],
                &ec,
                &["-keyout", "ca.key", "-out", "ca.crt"],
                &["-addext", "basicConstraints=critical,CA:TRUE"],
                &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ]
            .concat(),
        );
        for (who, usage, san) in [
            (
                "server",
                "serverAuth",
                "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
            ),
            ("client", "clientAuth", ""),
        ] {
            let (key, csr, crt, ext) = (
                format!("{who}.key"),
                format!("{who}.csr"),
                format!("{who}.crt"),
                format!("{who}.ext"),
            );
            std::fs::write(
                dir.join(&ext),
                format!("{san}extendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n"),
            )
            .expect("extensions file");
            let subject = format!("/CN={who}");
            openssl(
                &dir,
                &[
                    &["req", "-subj", subject.as_str()][..],
                    &ec,
                    &["-keyout", key.as_str(), "-out", csr.as_str()],
                ]
                .concat(),
            );
            openssl(
                &dir,
                &[
                    "x509",
                    "-req",
                    "-days",
                    "2",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &crt,
                    "-extfile",
                    &ext,
                ],
            );
        }
        Certificates { dir }
    }

    /// The CA certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The client certificate and key (PEM).
    pub fn client(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("client.crt"), self.dir.join("client.key"))
    }

    /// The server certificate and key (PEM).
    pub fn server(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("server.crt"), self.dir.join("server.key"))
    }

    /// What redis-rs needs to connect with these certificates.
    pub fn for_redis_rs(&self) -> TlsCertificates {
        let (cert, key) = self.client();
        TlsCertificates {
            client_tls: Some(ClientTlsConfig {
                client_cert: std::fs::read(cert).expect("client.crt"),
                client_key: std::fs::read(key).expect("client.key"),
            }),
            root_cert: Some(std::fs::read(self.ca()).expect("ca.crt")),
        }
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "could not run `openssl` ({e}): the TLS tests need it (`apt-get install openssl`)"
            )
        });
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TlsRedis {
    /// Starts a TLS-only server with `certificates` on a free loopback port, and waits until
    /// it answers PING over TLS.
    pub fn start(certificates: &Certificates) -> Self {
        let port = cache_runtime::testing::free_port();
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let (cert, key) = certificates.server();
        let child = Command::new(&binary)
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dir", &std::env::temp_dir().to_string_lossy()])
            .arg("--tls-cert-file")
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(&key)
            .arg("--tls-ca-cert-file")
            .arg(certificates.ca())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start `{binary}` ({e})"));
        let server = TlsRedis {
            port,
            dir: certificates.dir.clone(),
            child: Some(child),
        };
        let started = Instant::now();
        while server.try_connection(certificates).is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server with TLS on port {port} did not answer within 10 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        server
    }

    /// `rediss://127.0.0.1:{port}/`
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/", self.port)
    }

    /// A direct connection over TLS, for setting up or inspecting data.
    pub fn connection(&self, certificates: &Certificates) -> redis::Connection {
        self.try_connection(certificates)
            .unwrap_or_else(|| panic!("redis-server on TLS port {} is not answering", self.port))
    }

    fn try_connection(&self, certificates: &Certificates) -> Option<redis::Connection> {
        debug_assert_eq!(self.dir, certificates.dir);
        let client = redis::Client::build_with_tls(self.url(), certificates.for_redis_rs()).ok()?;
        let mut conn = client
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()?;
        redis::cmd("PING").query::<String>(&mut conn).ok()?;
        Some(conn)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
