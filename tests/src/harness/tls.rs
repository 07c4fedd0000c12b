//! Throw-away TLS material for tests: [`TlsFiles`], a CA with a server certificate for
//! `IP:127.0.0.1` and a client certificate, made by the `openssl` CLI in a temp dir.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// PEM files of a throw-away CA, a server certificate for `IP:127.0.0.1` and a client
/// certificate, all signed by that CA; made by the `openssl` CLI (EC P-256, valid one day).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The CA certificate (`ca_file` for clients, `--trusted-ca-file` for etcd).
    pub ca: PathBuf,
    /// etcd's certificate (SAN `IP:127.0.0.1`, serverAuth).
    pub server_cert: PathBuf,
    /// etcd's private key.
    pub server_key: PathBuf,
    /// The client certificate (clientAuth).
    pub client_cert: PathBuf,
    /// The client's private key.
    pub client_key: PathBuf,
}

impl TlsFiles {
    /// Makes a fresh CA and the two certificates in `dir` (created if missing).
    pub fn generate(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let p = |name: &str| dir.join(name);
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            dir,
            &[
                &["req", "-x509"],
                &ec[..],
                &[
                    "-keyout",
                    "ca-key.pem",
                    "-out",
                    "ca.pem",
                    "-days",
                    "1",
                    "-subj",
                    "/CN=autopilot-test-ca",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ]
            .concat(),
        )?;
        for (name, ext) in [
            (
                "server",
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            let key = format!("{name}-key.pem");
            let csr = format!("{name}.csr");
            let cert = format!("{name}.pem");
            let extfile = format!("{name}.ext");
            std::fs::write(
                p(&extfile),
                format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{ext}"),
            )
            .context("write openssl extension file")?;
            let subj = format!("/CN=autopilot-test-{name}");
            openssl(
                dir,
                &[
                    &["req", "-new"],
                    &ec[..],
                    &["-keyout", &key, "-out", &csr, "-subj", &subj],
                ]
                .concat(),
            )?;
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca-key.pem",
                    "-CAcreateserial",
                    "-out",
                    &cert,
                    "-days",
                    "1",
                    "-extfile",
                    &extfile,
                ],
            )?;
        }
        Ok(Self {
            ca: p("ca.pem"),
            server_cert: p("server.pem"),
            server_key: p("server-key.pem"),
            client_cert: p("client.pem"),
            client_key: p("client-key.pem"),
        })
    }
}

/// Runs `openssl args..` in `dir`; fails with its stderr.
fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("run openssl (apt-get install -y openssl)")?;
    if !out.status.success() {
        bail!(
            "openssl {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
