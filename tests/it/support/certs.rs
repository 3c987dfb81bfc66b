//! A throwaway PKI for TLS tests, made with the `openssl` command: a CA, a server certificate
//! for `localhost` / 127.0.0.1, and a client certificate, all signed by the CA.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Certs {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Certs {
    /// A receiver's `tls:` section that serves the server certificate and, with `mutual`,
    /// requires clients to present one from the CA.
    pub fn server_tls(&self, mutual: bool) -> String {
        let client_ca = if mutual {
            format!(", client_ca_file: \"{}\"", self.ca.display())
        } else {
            String::new()
        };
        format!(
            "tls: {{ cert_file: \"{}\", key_file: \"{}\"{client_ca} }}",
            self.server_cert.display(),
            self.server_key.display()
        )
    }

    /// A client's `tls:` section that trusts the CA and presents the client certificate.
    pub fn client_tls(&self) -> String {
        format!(
            "tls: {{ ca_file: \"{}\", cert_file: \"{}\", key_file: \"{}\" }}",
            self.ca.display(),
            self.client_cert.display(),
            self.client_key.display()
        )
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command is needed for the TLS tests");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn leaf(dir: &Path, name: &str, cn: &str, ext: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-sha256",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

pub fn make(dir: &Path) -> Certs {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-sha256",
            "-subj",
            "/CN=otelwatch test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    leaf(
        dir,
        "server",
        "localhost",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n",
    );
    leaf(
        dir,
        "client",
        "otelwatch test client",
        "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n",
    );
    Certs {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    }
}
