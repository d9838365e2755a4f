//! moto, the AWS API emulator, seeded as an EKS cluster's account by
//! `tools/moto/server.py`, for the tests that need an AWS: kerf-aws's own and the
//! `kerf controller --cloud-provider aws` end-to-end case.
//!
//! moto and cfn-lint come from PyPI through `tools/moto/install.sh` (a pinned
//! virtualenv under `~/.cache/kerf/aws-tools/`, made once per machine). Nothing here
//! skips: when they cannot be had, the call panics with why.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// The repository's root (this crate is `crates/kerf-testcluster`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The interpreter of the virtualenv `tools/moto/install.sh` makes.
pub fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let script = repo_root().join("tools/moto/install.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        match stdout.lines().find_map(|l| l.strip_prefix("python=")) {
            Some(p) if out.status.success() => p.to_string(),
            _ => panic!("{} failed ({}): {stdout}", script.display(), out.status),
        }
    })
}

/// A running moto server; dropping it stops the server.
pub struct Moto {
    child: Child,
    /// What `server.py` printed: endpoint, region, cluster, the seeded IDs and, with
    /// an IAM stack, the users' keys and the queue.
    pub info: serde_json::Value,
}

impl Drop for Moto {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts `tools/moto/server.py --cluster <cluster> --region <region> --k8s <k8s>`
    /// with `extra` arguments, and waits for its JSON line.
    pub fn start(cluster: &str, region: &str, k8s: &str, extra: &[&str]) -> Moto {
        let script = repo_root().join("tools/moto/server.py");
        let mut child = Command::new(python())
            .arg(&script)
            .args(["--cluster", cluster, "--region", region, "--k8s", k8s])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} for moto: {e}", python()));
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        stdout
            .read_line(&mut line)
            .expect("reading moto's first line");
        if line.trim().is_empty() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("moto did not start:\n{err}");
        }
        // moto prints to stdout when a request names a service it lacks (the Pricing
        // API); with the pipe closed that print raises and the request hangs. Drain both.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        if let Some(mut err) = child.stderr.take() {
            std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        }
        let info = serde_json::from_str(&line).expect("moto's JSON line");
        Moto { child, info }
    }

    /// `deploy/aws/cloudformation.yaml` deployed as a stack, IAM enforced from then on,
    /// each authorization decision appended to `audit_log` (see `server.py`).
    pub fn start_with_iam_stack(cluster: &str, region: &str, k8s: &str, audit_log: &Path) -> Moto {
        let template = repo_root().join("deploy/aws/cloudformation.yaml");
        Moto::start(
            cluster,
            region,
            k8s,
            &[
                "--iam-stack",
                template.to_str().expect("a UTF-8 path"),
                "--audit-log",
                audit_log.to_str().expect("a UTF-8 path"),
            ],
        )
    }

    pub fn endpoint(&self) -> &str {
        self.info["endpoint"].as_str().expect("endpoint")
    }

    /// A seeded image's ID, by the name `server.py` gave it.
    pub fn image(&self, name: &str) -> String {
        let id = self.info["images"][name].as_str();
        id.unwrap_or_else(|| panic!("no image {name} seeded"))
            .to_string()
    }

    /// The seeded subnet in `zone`.
    pub fn subnet(&self, zone: &str) -> String {
        let id = self.info["subnets"][zone].as_str();
        id.unwrap_or_else(|| panic!("no subnet seeded in {zone}"))
            .to_string()
    }

    /// An IAM user's `(access key, secret)` under an IAM stack: `controller` (the user
    /// `kerf-controller`, holding only kerf's policy) or `admin`.
    pub fn keys(&self, user: &str) -> (String, String) {
        let u = &self.info["iam"][user];
        let s = |k: &str| {
            u[k].as_str()
                .unwrap_or_else(|| panic!("no {k} for IAM user {user} in {u}"))
                .to_string()
        };
        (s("access_key_id"), s("secret_access_key"))
    }
}
