//! A throwaway PostgreSQL cluster on a free port ([`outbox_store::LocalCluster`]), for tests
//! that stop and restart the server or need TLS. Never the shared cluster.

use outbox_store::LocalCluster;
use std::path::PathBuf;

/// A private cluster; stopped and deleted on drop.
pub struct PrivateCluster {
    pub port: u16,
    inner: LocalCluster,
}

impl PrivateCluster {
    /// initdb + start. As root, the server runs as the `postgres` user (initdb refuses root).
    pub fn start() -> PrivateCluster {
        let inner = LocalCluster::create("outbox-pg").expect("a private cluster");
        inner.start().expect("start the private cluster");
        PrivateCluster {
            port: inner.port,
            inner,
        }
    }

    /// [`PrivateCluster::start`] with TLS on: a throwaway CA (its certificate is the returned
    /// PEM file) signs a server certificate for `localhost` only, so a client checking the
    /// name must connect to `localhost`, not `127.0.0.1`.
    pub fn start_with_tls() -> (PrivateCluster, PathBuf) {
        let mut inner = LocalCluster::create("outbox-pg").expect("a private cluster");
        let tls = inner.dir().join("tls");
        let files = crate::TestCa::new(&tls, "DNS:localhost");
        inner.give_to_postgres(&tls).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600)).unwrap();
        inner.set_settings(format!(
            "-c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            files.cert.display(),
            files.key.display()
        ));
        inner.start().expect("start the private cluster with TLS");
        let ca = files.ca;
        (
            PrivateCluster {
                port: inner.port,
                inner,
            },
            ca,
        )
    }

    /// Stops the server (fast shutdown: sessions are terminated).
    pub fn stop(&self) {
        self.inner.stop().expect("stop the private cluster");
    }

    /// Starts it again on the same port.
    pub fn restart(&self) {
        self.inner.start().expect("restart the private cluster");
    }

    /// The URL of database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        self.inner.url(name)
    }

    /// The URL without a database, for [`crate::TestDb::on`].
    pub fn base(&self) -> String {
        self.inner.base()
    }
}
