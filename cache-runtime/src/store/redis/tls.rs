//! TLS for `rediss://` (feature `tls`): rustls with the ring provider, for the blocking pool
//! (our own handshake, by the operation's deadline) and for the async connection (through
//! redis-rs' `Client::build_with_tls`, from the same files).

use std::io;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

use redis::{ClientTlsConfig, ConnectionAddr, ConnectionInfo, TlsCertificates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::blocking::left;
use crate::store::TlsFiles;

/// The blocking pool's TLS settings: `None` for a `redis://` URL.
#[derive(Clone)]
pub(crate) struct Tls {
    config: Option<Arc<ClientConfig>>,
}

/// The PEM files of [`TlsFiles`], read.
struct Pems {
    ca: Option<Vec<u8>>,
    client: Option<(Vec<u8>, Vec<u8>)>,
}

fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
}

impl Pems {
    fn read(files: &TlsFiles) -> Result<Pems, String> {
        Ok(Pems {
            ca: files
                .ca
                .as_deref()
                .map(|path| read(path, "CA file"))
                .transpose()?,
            client: match &files.client {
                None => None,
                Some((cert, key)) => {
                    Some((read(cert, "client certificate")?, read(key, "client key")?))
                }
            },
        })
    }
}

impl Tls {
    /// The settings for `info`, and what the async client needs; an error says what is wrong
    /// with the files or the URL.
    pub(crate) fn load(
        info: &ConnectionInfo,
        files: &TlsFiles,
    ) -> Result<(Tls, Option<TlsCertificates>), String> {
        let ConnectionAddr::TcpTls { insecure, .. } = info.addr() else {
            if files.ca.is_some() || files.client.is_some() {
                return Err("TLS files were given for a URL that is not rediss://".into());
            }
            return Ok((Tls { config: None }, None));
        };
        if *insecure {
            return Err("rediss://...#insecure (no certificate check) is not supported".into());
        }
        let pems = Pems::read(files)?;
        let mut roots = RootCertStore::empty();
        match &pems.ca {
            Some(ca) => {
                for cert in CertificateDer::pem_slice_iter(ca) {
                    let cert = cert.map_err(|e| format!("the CA file is not PEM: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("the CA file holds a bad certificate: {e}"))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
            }
        }
        let builder = ClientConfig::builder().with_root_certificates(roots);
        let config = match &pems.client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("the client certificate is not PEM: {e}"))?;
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|e| format!("the client key is not PEM: {e}"))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    format!("the client certificate and key do not go together: {e}")
                })?
            }
        };
        let certificates = TlsCertificates {
            client_tls: pems
                .client
                .map(|(client_cert, client_key)| ClientTlsConfig {
                    client_cert,
                    client_key,
                }),
            root_cert: pems.ca,
        };
        Ok((
            Tls {
                config: Some(Arc::new(config)),
            },
            Some(certificates),
        ))
    }

    /// The TLS handshake over `tcp` with the server named `host`, by `deadline`.
    pub(crate) fn handshake(
        &self,
        host: &str,
        tcp: TcpStream,
        deadline: Instant,
    ) -> io::Result<StreamOwned<ClientConnection, TcpStream>> {
        let config = self.config.clone().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no TLS settings for this URL")
        })?;
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            let left = left(deadline)?;
            stream.sock.set_read_timeout(Some(left))?;
            stream.sock.set_write_timeout(Some(left))?;
            match stream.conn.complete_io(&mut stream.sock) {
                Ok(_) => {}
                // Timed out: the loop checks what is left.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(stream)
    }
}
