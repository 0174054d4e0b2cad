//! A throwaway PostgreSQL cluster made with this machine's `initdb` and `pg_ctl`, in a
//! directory of its own, on a free port, listening on 127.0.0.1 only, with trust
//! authentication for the `postgres` user. For `outbox demo` and tests; never a server
//! anyone else uses. Stopped and deleted on drop.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A private cluster.
pub struct LocalCluster {
    /// The port it listens on.
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    /// Run the server programs as `postgres` (we are root; initdb refuses root).
    as_postgres: bool,
    /// Extra `-c name=value` server settings.
    settings: String,
}

/// The directory holding `initdb` and `pg_ctl`: from `$PATH`, else the newest under
/// `/usr/lib/postgresql/*/bin` (Debian, Ubuntu), else `/usr/local/pgsql/bin`.
fn bin_dir() -> Option<PathBuf> {
    let in_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|p| p.join("initdb").is_file() && p.join("pg_ctl").is_file())
    });
    if in_path.is_some() {
        return in_path;
    }
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    debian.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    debian.pop().or_else(|| {
        Some(PathBuf::from("/usr/local/pgsql/bin")).filter(|p| p.join("initdb").is_file())
    })
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

impl LocalCluster {
    /// Runs `initdb` in a new directory under the system's temp dir named `prefix-…`. The
    /// cluster is not started.
    pub fn create(prefix: &str) -> Result<LocalCluster, String> {
        let bin = bin_dir().ok_or_else(|| {
            "no PostgreSQL server programs (initdb, pg_ctl) found on $PATH or under /usr/lib/postgresql".to_string()
        })?;
        let as_postgres = is_root();
        if as_postgres {
            let known = Command::new("id").args(["-u", "postgres"]).output();
            if !known.is_ok_and(|o| o.status.success()) {
                return Err("running as root, and there is no `postgres` user to run the server as (PostgreSQL refuses to run as root)".into());
            }
        }
        let port = free_port()?;
        // A fresh directory with a name nobody can guess, made here (never one that was
        // there before, which someone else could have prepared). Only its owner (and we, or
        // root) may enter: the socket and the data live there.
        let dir = std::env::temp_dir().join(format!("{prefix}-{:016x}", rand_u64()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let cluster = LocalCluster {
            port,
            dir,
            bin,
            as_postgres,
            settings: String::new(),
        };
        if as_postgres {
            cluster.give_to_postgres(&cluster.dir)?;
        }
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        Ok(cluster)
    }

    /// Makes `path` (recursively) the `postgres` user's, when the server runs as that user.
    pub fn give_to_postgres(&self, path: &Path) -> Result<(), String> {
        if !self.as_postgres {
            return Ok(());
        }
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .map_err(|e| format!("chown: {e}"))?;
        if ok.success() {
            Ok(())
        } else {
            Err(format!("cannot chown {} to postgres", path.display()))
        }
    }

    /// The cluster's directory (data, socket, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's version (e.g. `15.20`), as `pg_ctl --version` says, if it says.
    pub fn version(&self) -> Option<String> {
        let out = Command::new(self.bin.join("pg_ctl"))
            .arg("--version")
            .output()
            .ok()?;
        // `pg_ctl (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)`
        let text = String::from_utf8_lossy(&out.stdout);
        let after = text.split_once("(PostgreSQL)")?.1;
        after.split_whitespace().next().map(str::to_string)
    }

    /// Extra server settings for the next start, e.g. `-c ssl=on`.
    pub fn set_settings(&mut self, settings: impl Into<String>) {
        self.settings = settings.into();
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let out = self
            .command(tool)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {tool}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn ctl(&self, action: &str) -> Result<(), String> {
        let data = self.data();
        let log = self.dir.join("server.log").display().to_string();
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off {}",
            self.port,
            self.dir.display(),
            self.settings
        );
        let mut args = vec!["-D", &data, "-l", &log, "-w", "-t", "60"];
        if action == "start" {
            args.extend(["-o", opts.as_str()]);
        } else {
            args.extend(["-m", "fast"]);
        }
        args.push(action);
        self.run("pg_ctl", &args)
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) -> Result<(), String> {
        self.ctl("start")
    }

    /// Stops the server (fast shutdown: sessions are terminated).
    pub fn stop(&self) -> Result<(), String> {
        self.ctl("stop")
    }

    /// The URL of database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base())
    }

    /// A connection string for database `name` over the Unix socket in the cluster's
    /// directory (the only way in when TCP is off).
    pub fn socket_url(&self, name: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={name}",
            self.dir.display(),
            self.port
        )
    }

    /// The URL without a database.
    pub fn base(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }
}

impl LocalCluster {
    /// Stops the server (at once) and deletes the directory.
    fn remove(&self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Stops the cluster in `dir` (made by [`LocalCluster::create`] in this or another
    /// process, which may be gone) and deletes the directory: for a clean-up that outlives
    /// the process that made it. Nothing happens where there is no cluster.
    pub fn remove_dir(dir: &Path) {
        let Some(bin) = bin_dir() else {
            let _ = std::fs::remove_dir_all(dir);
            return;
        };
        let cluster = LocalCluster {
            port: 0,
            dir: dir.to_path_buf(),
            bin,
            as_postgres: is_root(),
            settings: String::new(),
        };
        // Dropping it removes it.
        drop(cluster);
    }
}

/// A random number from the kernel, for names nobody can guess.
fn rand_u64() -> u64 {
    use std::io::Read;
    let mut b = [0u8; 8];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)) {
        Ok(()) => u64::from_le_bytes(b),
        // Without /dev/urandom: the clock's nanoseconds and the process id.
        Err(_) => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            t ^ (u64::from(std::process::id()) << 32)
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.remove();
    }
}
